"""Writes a fuzz target's seed corpus from the golden vectors (tests/vectors/messages.txt)."""
import hashlib
import sys
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "messages.txt"


def vectors():
    for line in VECTORS.read_text().splitlines():
        if line and not line.startswith("#"):
            f = line.split("|")
            yield f[1].encode(), bytes.fromhex(f[2])


def seeds(name):
    rows = list(vectors())
    if name == "fuzz_wire":
        return [t + b"\0" + p for t, p in rows]
    if name == "fuzz_engine":
        # pick byte (0..9: the fixed topics; 10: raw), length, payload
        out = [bytes([i, len(p)]) + p[:255] for i, (t, p) in enumerate(rows)]
        out.append(b"".join(bytes([k, 3]) + b"\x00\x00x" for k in range(11)))
        return out
    if name == "fuzz_boot":
        rec = bytes.fromhex("44424d510100000000000000") + b"\0" * 4
        return [bytes([16]) + rec + rec, b"\x04\x0d\xf0\xef\xbe", bytes([0, 1, 2, 3, 4, 5])]
    return [b'{"proto":2,"chunk":65536,"window":16,"xfers":4}',
            b'{"status":"online","boot_time":1795336659,"boot_id":"0123456789abcdef"}',
            b'["/lib/a.py",0,11,""]', b"[4096,4096,100,50,50]", b"/lib/../x/./y",
            b"prefix = esp32/kitchen", b"[kitchen]"] + [p for _, p in rows]


def main():
    out = Path(sys.argv[2])
    for s in seeds(sys.argv[1]):
        (out / ("seed-" + hashlib.sha1(s).hexdigest())).write_bytes(s)


main()
