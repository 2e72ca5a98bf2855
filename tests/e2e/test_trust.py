"""Trust end to end (issue 19): a board started with keys obeys only commands signed by a key
it authorized, for its current boot, once; it signs its status and replies, and mqboard
checks them against the key it recorded for the board. Each test is an attack by someone
who can publish and subscribe anything on the broker, and fails without its check."""

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import BIN, Board, stop


class Operator:
    """An operator: a config directory (key, known_boards) of its own."""

    def __init__(self, tmp, name="op"):
        self.cfg = tmp / name
        self.cfg.mkdir()
        self.env = dict(os.environ, XDG_CONFIG_HOME=str(self.cfg))
        r = self.run_mqb("key", "generate")
        assert r.returncode == 0, r.stderr
        self.pub = self.cfg / "mqboard" / "id_mqb.pub"

    def run_mqb(self, *args, timeout=60, input=None):
        return subprocess.run([str(BIN / "mqboard"), *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, input=input)

    def mqb(self, board, *args, check=True, input=None):
        r = self.run_mqb("-p", str(board.broker.port), "--prefix", board.prefix, *args,
                         input=input)
        if check:
            assert r.returncode == 0, (args, r.returncode, r.stderr)
        return r


def keyed_board(broker, tmp, *ops, wait=True):
    keys = tmp / "keys"
    keys.mkdir(mode=0o700)
    lines = "".join(op.pub.read_text() for op in ops)
    if lines:
        (keys / "authorized_keys").write_text(lines)
    return Board(broker, tmp, "--keys", str(keys), "--wdt-timeout", "0", wait=wait)


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


class Wire:
    """A client on the broker that records and injects whatever it likes."""

    def __init__(self, broker, sub):
        self.msgs = []
        self.lock = threading.Lock()
        self.c = mqtt.Client()
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", broker.port)
        self.c.subscribe(sub, 1)
        self.c.loop_start()
        time.sleep(0.3)  # the SUBACK (paho offers no simpler wait here)

    def _on(self, c, u, m):  # paho 1.x callback
        with self.lock:
            self.msgs.append((m.topic, bytes(m.payload), m.retain))

    def taken(self, pred=lambda t: True):
        with self.lock:
            return [(t, p) for t, p, r in self.msgs if pred(t)]

    def pub(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def op(tmp_path):
    return Operator(tmp_path)


@pytest.fixture
def signed(broker, tmp_path, op):
    b = keyed_board(broker, tmp_path, op, wait=False)
    assert wait_for(lambda: op.mqb(b, "-T", "1", "eval", "1", check=False).returncode == 0, 15)
    yield b
    b.stop()


def test_the_operator_works_as_before_and_the_board_key_is_recorded(signed, op, tmp_path):
    assert op.mqb(signed, "eval", "6*7").stdout == "42\n"
    assert op.mqb(signed, "exec", "for i in range(3): print(i)").stdout == "0\n1\n2\n"
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3_000_000))  # 46 messages: acknowledgements, signed too
    op.mqb(signed, "put", str(src), "/big.bin")
    assert (signed.root / "big.bin").read_bytes() == src.read_bytes()
    op.mqb(signed, "get", "/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert "big.bin" in op.mqb(signed, "ls").stdout
    st = op.mqb(signed, "status").stdout
    assert "obeys signed commands only" in st and "key SHA256:" in st
    known = (op.cfg / "mqboard" / "known_boards").read_text()
    assert known.startswith(signed.prefix + " mqb-p256 ")
    assert signed.prefix in op.run_mqb("key", "list").stdout
    op.mqb(signed, "reset")  # a new boot: the next command is signed for it
    assert op.mqb(signed, "eval", "1+1").stdout == "2\n"


def assert_strangers_refused(board, tmp_path):
    """The original tool's message (no signature) and another operator's key: both refused
    with "not authorized", neither runs (the caller checks that no 'owned' file appeared)."""
    w = Wire(board.broker, board.prefix + "/mqb/reply/#")
    w.pub(board.prefix + "/mqb/cmd/eval/abcdefgh", b"\x80\x00open('owned','w').write('x')")
    assert wait_for(lambda: w.taken(lambda t: t.endswith("/abcdefgh")))
    assert b"not authorized" in w.taken(lambda t: t.endswith("/abcdefgh"))[0][1]
    w.close()
    other = Operator(tmp_path, "other")
    r = other.mqb(board, "exec", "open('owned','w').write('x')", check=False)
    assert r.returncode == 1 and "not authorized" in r.stderr


def test_unsigned_and_unknown_keys_are_refused(signed, op, tmp_path):
    assert_strangers_refused(signed, tmp_path)
    # No key at all.
    r = op.mqb(signed, "--key", str(tmp_path / "none"), "eval", "1", check=False)
    assert r.returncode == 1 and "no key to sign with" in r.stderr
    assert not (signed.root / "owned").exists()


def test_a_recorded_command_cannot_be_replayed(signed, op, broker, tmp_path):
    w = Wire(broker, signed.prefix + "/mqb/cmd/#")
    f = tmp_path / "app.py"
    f.write_text("v = 1\n")
    op.mqb(signed, "put", str(f), "/app.py")
    op.mqb(signed, "exec", "open('count','a').write('x')")
    recorded = w.taken()
    assert recorded
    f.write_text("v = 2\n")
    op.mqb(signed, "put", str(f), "/app.py")
    # Replayed as recorded, and with the deadline in the id rewritten.
    r = Wire(broker, signed.prefix + "/mqb/reply/#")
    for topic, payload in recorded:
        w.pub(topic, payload)
        w.pub(topic.replace(topic.split("/")[-1], topic.split("/")[-1][:8] + ".ffffffff")
              if "/eval/" in topic else topic, payload)
    assert wait_for(lambda: any(b"already used" in p or b"not authorized" in p
                                for t, p in r.taken()))
    op.mqb(signed, "eval", "1")  # the board is fine, and everything before it was handled
    assert (signed.root / "app.py").read_text() == "v = 2\n"
    assert (signed.root / "count").read_text() == "x"
    # After a reset the recording belongs to another boot.
    op.mqb(signed, "reset")
    for topic, payload in recorded:
        w.pub(topic, payload)
    assert wait_for(lambda: any(b"another boot" in p for t, p in r.taken()))
    op.mqb(signed, "eval", "1")
    assert (signed.root / "count").read_text() == "x"
    w.close()
    r.close()


def test_forged_status_and_replies_are_dropped(signed, op, broker):
    status_topic = signed.prefix + "/mqb/status"
    w = Wire(broker, signed.prefix + "/mqb/cmd/#")

    # A reply forged by someone who sees the command: mqboard drops it, takes the board's.
    def forge():
        for _ in range(200):
            for t, p in w.taken(lambda t: "/cmd/eval/" in t):
                rid = t.split("/")[-1]
                w.pub(f"{signed.prefix}/mqb/reply/out/{rid}", b"\xff\xff666")
                return
            time.sleep(0.01)

    th = threading.Thread(target=forge)
    th.start()
    r = op.mqb(signed, "eval", "import time; time.sleep(0.5); 6*7")
    th.join()
    assert r.stdout == "42\n" and "did not sign" in r.stderr
    # A forged status (a rollout's evidence): ignored, said.
    w.pub(status_topic, b'{"status":"online","boot_id":"0000000000000001","slot":1,'
          b'"image":"valid"}', retain=True)
    r = op.mqb(signed, "status", check=False)
    assert r.returncode == 1 and "not signed by its recorded key" in r.stderr
    assert "0000000000000001" not in r.stdout
    w.close()
    signed.stop()
    signed.start(wait=False)  # its own status again
    assert wait_for(lambda: op.mqb(signed, "-T", "1", "eval", "1", check=False).returncode == 0)


def test_a_changed_board_key_is_refused_loudly(signed, op, tmp_path):
    op.mqb(signed, "eval", "1")
    signed.stop()
    (tmp_path / "keys" / "board_key").unlink()  # another board (or an impostor) at the prefix
    signed.start(wait=False)
    # Once the new board's status is out (the aedes cluster serves the old one to a first
    # subscription for a while: status subscribes again), mqboard refuses the board loudly.
    assert wait_for(lambda: "WARNING" in op.mqb(signed, "-T", "1", "status",
                                                 check=False).stderr, 20)
    r = op.mqb(signed, "-T", "2", "status", check=False)
    assert r.returncode != 0 and "WARNING" in r.stderr and "not the key recorded" in r.stderr
    assert op.mqb(signed, "-T", "2", "eval", "1", check=False).returncode != 0


def test_trust_add_and_remove(signed, op, tmp_path):
    colleague = Operator(tmp_path, "colleague")
    assert colleague.mqb(signed, "eval", "1", check=False).returncode == 1
    out = op.mqb(signed, "trust", "add", str(colleague.pub)).stdout
    assert out.startswith("authorized: SHA256:")
    assert colleague.mqb(signed, "eval", "2").stdout == "2\n"
    fprs = op.mqb(signed, "trust", "list").stdout.split()
    assert len(fprs) == 2
    cfpr = colleague.run_mqb("key", "show").stdout.split()[0]
    assert cfpr in fprs
    # Revoked: the stolen laptop's key no longer works, and the change survives a restart.
    op.mqb(signed, "trust", "remove", cfpr)
    assert colleague.mqb(signed, "eval", "3", check=False).returncode == 1
    signed.stop()
    signed.start(wait=False)
    assert wait_for(lambda: op.mqb(signed, "-T", "1", "eval", "1", check=False).returncode == 0)
    assert colleague.mqb(signed, "eval", "3", check=False).returncode == 1
    # The last key stays: removing it would open the board to anyone.
    mine = op.run_mqb("key", "show").stdout.split()[0]
    r = op.mqb(signed, "trust", "remove", mine, check=False)
    assert r.returncode == 1 and "last authorized key" in r.stderr


def test_a_board_without_keys_takes_none_from_the_broker(broker, tmp_path, op):
    b = keyed_board(broker, tmp_path)  # its own key, nobody authorized yet
    try:
        r = op.mqb(b, "trust", "add", str(op.pub), check=False)
        assert r.returncode == 1 and "on the board itself" in r.stderr
        assert not (tmp_path / "keys" / "authorized_keys").exists()
        assert "insecure" in op.mqb(b, "status").stdout
        assert op.mqb(b, "eval", "1").stdout == "1\n"  # as today, unsigned
        assert oct((tmp_path / "keys" / "board_key").stat().st_mode & 0o777) == "0o600"
    finally:
        b.stop()


def test_key_files_are_checked(tmp_path, op, broker):
    key = op.cfg / "mqboard" / "id_mqb"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert op.run_mqb("key", "generate").returncode != 0  # never overwritten
    key.chmod(0o644)
    r = op.run_mqb("key", "show")
    assert r.returncode != 0 and "chmod 600" in r.stderr
    key.chmod(0o600)
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "authorized_keys").write_text(op.pub.read_text())
    (keys / "authorized_keys").chmod(0o666)
    log = tmp_path / "agent.log"
    with open(log, "wb") as f:
        p = subprocess.Popen([str(BIN / "mqrepld"), "-p", str(broker.port), "--prefix", "t/x",
                              "--root", str(tmp_path), "--keys", str(keys), "--rtc-file",
                              str(tmp_path / "rtc")], stdout=f, stderr=subprocess.STDOUT)
        try:
            assert p.wait(timeout=10) != 0
        finally:
            stop(p)
    assert "may be changed by other users" in log.read_text()


def test_fleets_sign_for_each_board(broker, tmp_path, op):
    boards = []
    try:
        for i in range(2):
            d = tmp_path / f"b{i}"
            d.mkdir()
            b = keyed_board(broker, d, op, wait=False)
            boards.append(b)
            assert wait_for(lambda: op.mqb(b, "-T", "1", "eval", "1", check=False).returncode == 0)
        (op.cfg / "mqboard" / "config").write_text(
            f"port = {broker.port}\n[group g]\nmembers = "
            + " ".join(b.prefix for b in boards) + "\n")
        r = op.run_mqb("-b", "g", "eval", "6*7")  # one connection, a signature per board
        assert r.returncode == 0, r.stderr
        assert all(f"{b.prefix}: 42" in r.stdout for b in boards)
        r = op.run_mqb("-b", "g", "exec", "open('f','w').write('x')", "+", "ls")  # a process each
        assert r.returncode == 0, r.stderr
        assert all((b.root / "f").read_text() == "x" for b in boards)
        # A colleague's key, authorized on neither: nothing runs anywhere.
        other = Operator(tmp_path, "other")
        (other.cfg / "mqboard" / "config").write_text(
            (op.cfg / "mqboard" / "config").read_text())
        r = other.run_mqb("-b", "g", "exec", "open('g','w').write('x')")
        assert r.returncode == 1 and "not authorized" in r.stdout + r.stderr
        assert not any((b.root / "g").exists() for b in boards)
    finally:
        for b in boards:
            b.stop()


def test_firmware_must_carry_a_release_signature(broker, tmp_path, op):
    release = Operator(tmp_path, "release")  # the build server's key, not the operator's
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "authorized_keys").write_text(op.pub.read_text())
    (keys / "release_keys").write_text(release.pub.read_text())
    b = Board(broker, tmp_path, "--keys", str(keys), "--wdt-timeout", "0", "--slots",
              str(tmp_path / "slots"), wait=False)
    try:
        assert wait_for(lambda: op.mqb(b, "-T", "1", "eval", "1", check=False).returncode == 0)
        image = tmp_path / "image"
        image.write_bytes(b"#!/bin/sh\nexit 1\n" + os.urandom(700_000))  # acknowledged
        slot1 = tmp_path / "slots" / "slot1"
        before = slot1.read_bytes() if slot1.exists() else None

        def ota(*args):
            return op.mqb(b, "ota", *args, str(image), check=False)

        r = ota()
        assert r.returncode == 1 and "not signed by a release key" in r.stderr
        # Signed by the operator's key (not a release key): refused.
        assert op.run_mqb("key", "sign", str(image), "5").returncode == 0
        r = ota()
        assert r.returncode == 1 and "bad release signature" in r.stderr
        # The release key's signature, with its version changed afterwards: refused.
        sign = release.run_mqb("key", "sign", str(image), "5")
        assert sign.returncode == 0, sign.stderr
        sig = (tmp_path / "image.sig").read_text()
        (tmp_path / "image.sig").write_text(sig.replace(" 5 ", " 6 "))
        r = ota()
        assert r.returncode == 1 and "bad release signature" in r.stderr
        assert (slot1.read_bytes() if slot1.exists() else None) == before
        (tmp_path / "image.sig").write_text(sig)
        r = ota()
        assert r.returncode == 0, r.stderr
        assert slot1.read_bytes() == image.read_bytes()
        assert (keys / "image_version").read_text().strip() == "5"
        # A lower version is a downgrade: refused unless asked for (a signed command).
        release.run_mqb("key", "sign", str(image), "4")
        r = ota()
        assert r.returncode == 1 and "below the board's" in r.stderr
        r = ota("--allow-downgrade")
        assert r.returncode == 0, r.stderr
        assert (keys / "image_version").read_text().strip() == "4"
    finally:
        b.stop()


def test_the_plain_interface_is_off_with_keys(signed, op, broker):
    w = Wire(broker, signed.prefix + "/repl/out")
    w.pub(signed.prefix + "/repl/in", b"open('owned','w').write('x')")
    op.mqb(signed, "eval", "1")  # the board handled what came before
    assert not w.taken() and not (signed.root / "owned").exists()
    w.close()


def readme_block():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("### Only your key commands your boards", 1)[1].split("```sh", 1)[1]
    return [l for l in block.split("```", 1)[0].splitlines() if l.startswith("mqboard ")]


def test_readme_trust_examples(broker, tmp_path):
    """The README's section, line by line, as written: the first line makes the key the
    board (started by the test, as on the board itself) then obeys."""
    cfg = tmp_path / "cfg"
    work = tmp_path / "work"
    work.mkdir()
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    colleague = Operator(tmp_path, "colleague")
    shutil.copy(colleague.pub, work / "colleague.pub")
    (work / "firmware.bin").write_bytes(b"#!/bin/sh\nexit 0\n")
    b = None
    lines = readme_block()
    assert len(lines) >= 10
    try:
        for line in lines:
            env = dict(os.environ, XDG_CONFIG_HOME=str(cfg), PATH=f"{BIN}:{os.environ['PATH']}",
                       MQBOARD_PORT=str(broker.port), MQBOARD_PREFIX=b.prefix if b else "x/y")
            r = subprocess.run(["bash", "-o", "pipefail", "-ec", line], cwd=work, env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (line, r.stdout, r.stderr)
            if line.startswith("mqboard key generate release.key"):
                shutil.copy(work / "release.key.pub", keys / "release_keys")
            if b is None:  # the operator's key exists now: the board takes it, locally
                shutil.copy(cfg / "mqboard" / "id_mqb.pub", keys / "authorized_keys")
                b = Board(broker, tmp_path, "--keys", str(keys), "--wdt-timeout", "0",
                          "--slots", str(tmp_path / "slots"), wait=False)
                assert wait_for(lambda: subprocess.run(
                    [str(BIN / "mqboard"), "-T", "1", "-p", str(broker.port), "--prefix",
                     b.prefix, "eval", "1"], env=env, capture_output=True).returncode == 0)
            if line.startswith("mqboard status"):
                assert "obeys signed commands only" in r.stdout
            if line.startswith("mqboard trust list"):
                assert len(r.stdout.split()) == 2
        assert (keys / "image_version").read_text().strip() == "7"
        assert len((keys / "authorized_keys").read_text().splitlines()) == 1
    finally:
        if b is not None:
            b.stop()


def test_keyboard_input_and_mount_on_a_signed_board(signed, op, tmp_path, broker):
    """The board's questions are signed too: input() and a mount work, and a question forged
    by someone who sees the eval's id is not answered (nor is stdin read for it)."""
    assert op.mqb(signed, "exec", "print(input() * 2)", input="ab\n").stdout == "abab\n"
    d = tmp_path / "src"
    d.mkdir()
    (d / "hello.py").write_text("print('hello from the mount')\n")
    r = op.mqb(signed, "mount", str(d), "+", "exec", "import hello")
    assert "hello from the mount" in r.stdout
    # A forged question to a running eval's id: mqboard drops it.
    w = Wire(broker, signed.prefix + "/mqb/cmd/#")

    def forge():
        for _ in range(300):
            for t, p in w.taken(lambda t: "/cmd/eval/" in t):
                rid = t.split("/")[-1]
                w.pub(f"{signed.prefix}/mqb/reply/ask/{rid}",
                      b'\xff\xff{"n":1,"op":"stdin","len":100}')
                return
            time.sleep(0.01)

    th = threading.Thread(target=forge)
    th.start()
    r = op.mqb(signed, "exec", "import time; time.sleep(1); print('done')", input="secret\n")
    th.join()
    w.close()
    assert r.stdout == "done\n" and "did not sign" in r.stderr
