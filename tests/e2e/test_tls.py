"""TLS-PSK end to end: a broker listener with psk_hint and a psk_file, the agent and the tool
both with their own identities; a wrong key is a connection failure (exit 4)."""

import subprocess

from conftest import BIN, Board, Broker


def test_tls_psk(tmp_path):
    psk = tmp_path / "psk"
    psk.write_text("board1:00112233445566778899aabbccddeeff\n"
                   "admin:ffeeddccbbaa99887766554433221100\n")
    # user root: a broker started as root would otherwise drop to "mosquitto", which cannot
    # read files in the test's private temporary directory.
    broker = Broker(tmp_path, extra=f"psk_hint mqboard\npsk_file {psk}\nuser root\n")
    b = Board(broker, tmp_path, "--psk-identity", "board1", "--psk",
              "00112233445566778899aabbccddeeff", wait=False)
    try:
        def tool(*args, key="ffeeddccbbaa99887766554433221100"):
            return subprocess.run(
                [str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", b.prefix,
                 "--psk-identity", "admin", "--psk", key, "-T", "2", *args],
                capture_output=True, text=True, timeout=60)
        for _ in range(50):
            r = tool("eval", "6*7")
            if r.returncode == 0:
                break
        assert r.stdout == "42\n"
        r = tool("eval", "1", key="00" * 16)
        assert r.returncode == 4
        assert "ffeedd" not in r.stderr and "0000" not in r.stderr  # keys are never printed
    finally:
        b.stop()
        broker.close()
