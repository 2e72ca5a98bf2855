"""The board package and the mqb C module on MicroPython's unix port, driven by mqboard as any
board. Needs MQB_MICROPYTHON (a unix micropython binary built with USER_C_MODULES=
ports/micropython, see docs/micropython.md) and MQB_MICROPYTHON_LIB (a micropython-lib
checkout, for umqtt.simple); skipped without them."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import BIN, Broker, stop
from test_trust import wait_for

LIB = os.environ.get("MQB_MICROPYTHON_LIB")
REPO = Path(__file__).resolve().parents[2]
# The two forms of the board: a firmware built with the mqb module (MQB_MICROPYTHON), and a
# stock firmware that loads mqb.mpy, the native module (MQB_MICROPYTHON_STOCK + MQB_MPY).
FORMS = [pytest.param((os.environ.get("MQB_MICROPYTHON"), None), id="firmware"),
         pytest.param((os.environ.get("MQB_MICROPYTHON_STOCK"), os.environ.get("MQB_MPY")),
                      id="natmod")]
MP = MPY = None  # the form of the running test (the form fixture)


@pytest.fixture(autouse=True, params=FORMS)
def form(request):
    global MP, MPY
    MP, MPY = request.param
    if not (MP and LIB) or (request.node.callspec.id.startswith("natmod") and not MPY):
        pytest.skip("MQB_MICROPYTHON (or MQB_MICROPYTHON_STOCK and MQB_MPY) and "
                    "MQB_MICROPYTHON_LIB not set (docs/micropython.md)")
    return "natmod" if MPY else "firmware"


def needs_firmware_module(form, what):
    """What only the firmware module does (docs/micropython.md): skipped for the .mpy."""
    if form == "natmod":
        pytest.skip(what + ": the firmware module's, not the .mpy's")


class MpBoard:
    """The board package on micropython, restarted on every reset as a launcher would."""

    def __init__(self, broker, tmp, wdt=0, allok=300, prefix=None, keys=False, files=(), env=None):
        self.broker, self.tmp = broker, tmp
        self.prefix = prefix or "mp/" + uuid.uuid4().hex[:8]
        pkg = tmp / "pkg"
        (pkg / "umqtt").mkdir(parents=True, exist_ok=True)
        for f in [*(REPO / "ports/micropython/board").glob("*.py"), *files] + \
                ([Path(MPY)] if MPY else []):
            shutil.copy(f, pkg)
        shutil.copy(Path(LIB) / "micropython/umqtt.simple/umqtt/simple.py", pkg / "umqtt")
        (tmp / "ota").mkdir(exist_ok=True)
        self.env = dict(os.environ, MQB_SERVER="127.0.0.1", MQB_PORT=str(broker.board_port),
                        MQB_PREFIX=self.prefix, MQB_FS_IMAGE=str(tmp / "fs.img"),
                        MQB_RTC_FILE=str(tmp / "rtc"), MQB_OTA_DIR=str(tmp / "ota"),
                        MQB_WDT_TIMEOUT=str(wdt), MQB_ALLOK=str(allok), MICROPYPATH=str(pkg),
                        MQB_KEYS="/.mqb-keys" if keys else "", **(env or {}))
        self.pkg = pkg
        self.proc = None
        self.stopping = False
        self.log = open(tmp / "micropython.log", "ab")
        self.thread = threading.Thread(target=self._launcher, daemon=True)
        self.thread.start()
        self.wait_ready()

    def _launcher(self):
        cause = "1"
        while not self.stopping:
            env = dict(self.env, MQB_RESET_CAUSE=cause)
            self.proc = subprocess.Popen([MP, str(self.pkg / "mqb_unix.py")], env=env,
                                         stdout=self.log, stderr=subprocess.STDOUT)
            rc = self.proc.wait()
            cause = {77: "2", 78: "3", 79: "5"}.get(rc, "2")
            if self.stopping or rc not in (77, 78, 79):
                break

    def mqb(self, *args, check=True, text=True, timeout=120):
        r = subprocess.run([str(BIN / "mqboard"), "-p", str(self.broker.port), "--prefix",
                            self.prefix, *args], capture_output=True, text=text, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"mqboard {args} failed ({r.returncode}): {r.stderr!r}")
        return r

    def out(self, *args):
        return self.mqb(*args).stdout

    def status(self):
        r = self.mqb("-T", "1", "--json", "status", check=False)
        return json.loads(r.stdout)["result"] if r.returncode == 0 else None

    def wait_ready(self, timeout=20, check=None):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.mqb("-T", "1", "eval", "1", check=False).returncode == 0 and \
                    (check is None or check()):
                return
            time.sleep(0.1)
        raise RuntimeError("the MicroPython board did not answer")

    def stop(self):
        self.stopping = True
        if self.proc is not None:
            stop(self.proc)
        self.thread.join(timeout=10)
        self.log.close()


@pytest.fixture
def mp(broker, tmp_path):
    b = MpBoard(broker, tmp_path)
    yield b
    b.stop()


def test_eval(mp):
    assert mp.out("eval", "45+876") == "921\n"
    assert mp.out("exec", "x = 5\nprint('x is', x)") == "x is 5\n"
    assert mp.out("eval", "x * 2") == "10\n"  # globals persist
    r = mp.mqb("eval", "1/0", check=False)
    assert r.returncode == 1 and "ZeroDivisionError" in r.stderr
    r = mp.mqb("exec", "for i in range(10000): print('%9d' % i)")
    assert r.stdout == "".join("%9d\n" % i for i in range(10000))  # 100 KB, streamed
    st = mp.status()
    assert st["status"] == "online" and st["agent"].startswith("mqboard-mp")


@pytest.mark.parametrize("size", [0, 1, 1024 * 1024])
def test_put_get(mp, tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    mp.mqb("put", str(tmp_path / "src"), "/data.bin")
    mp.mqb("get", "/data.bin", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == data
    assert mp.out("sha256sum", "/data.bin").split()[0] == hashlib.sha256(data).hexdigest()


def test_fs_commands_and_sync(mp, tmp_path):
    mp.mqb("mkdir", "-p", "/a/b")
    assert mp.out("ls", "/a") == "b/\n"
    src = tmp_path / "app"
    (src / "lib").mkdir(parents=True)
    (src / "main.py").write_text("v1")
    (src / "lib/u.py").write_text("u")
    assert "2 put" in mp.out("sync", str(src), "/app")
    assert "2 unchanged" in mp.out("sync", str(src), "/app")
    mp.mqb("rm", "-r", "/a")
    assert "a/" not in mp.out("ls", "/")


def test_ota(mp, tmp_path):
    image = tmp_path / "image"
    image.write_bytes(os.urandom(200 * 1024))
    assert "boots at the next reset" in mp.out("ota", str(image))
    assert (mp.tmp / "ota/slot1").read_bytes() == image.read_bytes()
    assert (mp.tmp / "ota/boot").read_text() == "1 new"
    # A wrong hash: the engine refuses it and the boot choice stays.
    (mp.tmp / "ota/boot").write_text("0 valid")
    topic = f"{mp.prefix}/mqb/cmd/ota/BadHash1/{'0' * 64}"
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mp.broker.port), "-q", "1",
                    "-t", topic, "-s"], input=b"\x80\x00image", check=True)
    time.sleep(1)
    assert (mp.tmp / "ota/boot").read_text() == "0 valid"


def test_reset_modes_and_safe_mode(broker, tmp_path):
    b = MpBoard(broker, tmp_path, wdt=2, allok=300)
    try:
        boot = b.status()["boot_id"]
        time.sleep(5)  # the watchdog is fed through the broker: no reset
        assert b.status()["boot_id"] == boot
        b.mqb("reset", "--safe")
        b.wait_ready()
        assert b.status()["mode"] == "safe"
        b.mqb("reset", "--soft")
        assert b.out("eval", "1") == "1\n"
        st = b.status()
        assert st["mode"] == "normal" and st["reset_cause"] == "soft"
    finally:
        b.stop()


def test_the_original_protocol_still_works(mp):
    """What the original tool sends: a one-message eval, a put in 1400-byte chunks without
    acknowledgements, a get in 2800-byte chunks ending with an empty last message."""
    import paho.mqtt.client as mqtt
    got = []
    c = mqtt.Client()
    c.on_message = lambda cl, u, m: got.append((m.topic.split("/")[-2:], m.payload))
    c.connect("127.0.0.1", mp.broker.port)
    c.subscribe(f"{mp.prefix}/mqb/reply/#", 1)
    c.loop_start()
    base = f"{mp.prefix}/mqb/cmd"

    def wait(n, timeout=15):
        end = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < end:
            time.sleep(0.02)
        return got[:n]

    try:
        time.sleep(0.3)
        c.publish(f"{base}/eval/Orig0001", b"\x80\x00" + b"6*7", qos=1)
        assert wait(1) == [(["out", "Orig0001"], b"\xff\xff42")]
        data = os.urandom(5000)
        chunks = [data[i:i + 1400] for i in range(0, len(data), 1400)]
        for i, ch in enumerate(chunks):
            hdr = (0x8000 if i == len(chunks) - 1 else 0) | i
            c.publish(f"{base}/put/Orig0002//o.bin", bytes((hdr >> 8, hdr & 255)) + ch, qos=1)
        assert wait(2)[1] == (["out", "Orig0002"], b"\xff\xffOK")
        c.publish(f"{base}/get/Orig0003//o.bin", b"\x80\x00", qos=1)
        msgs = wait(2 + 3)[2:]  # 2800 + 2200 bytes, then the empty last message
        assert [m[1][:2] for m in msgs] == [b"\x00\x00", b"\x00\x01", b"\x80\x02"]
        assert b"".join(m[1][2:] for m in msgs) == data
    finally:
        c.loop_stop()
        c.disconnect()


def test_interrupt_an_eval_that_prints(mp):
    r = mp.mqb("--timeout-run", "1", "exec", "import time\nwhile True:\n print(1)\n time.sleep(0.01)",
               check=False, timeout=60)
    assert r.returncode == 124 and "KeyboardInterrupt" in r.stderr
    assert mp.out("eval", "2") == "2\n"


@pytest.mark.parametrize("code", ["import time\ntime.sleep(60)", "while True:\n pass",
                                  "import time\ntime.sleep_ms(60000)"])
def test_interrupt_an_eval_that_prints_nothing(form, mp, code):
    """The board hears its host while the eval is silent (its ticker); without it the eval
    held the board for the whole minute and the tool's 30 s ran out."""
    needs_firmware_module(form, "interrupting a silent eval")
    r = mp.mqb("--timeout-run", "1", "exec", code, check=False, timeout=30)
    assert r.returncode == 124 and "KeyboardInterrupt" in r.stderr, r.stderr
    assert mp.out("eval", "2") == "2\n"


def test_reset_lands_while_a_silent_eval_runs(form, mp):
    needs_firmware_module(form, "interrupting a silent eval")
    boot = mp.status()["boot_id"]
    mp.mqb("--no-follow", "exec", "import time\ntime.sleep(60)")
    r = mp.mqb("reset", check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    assert mp.out("eval", "1+1") == "2\n"
    assert mp.status()["boot_id"] != boot


def test_a_silent_eval_ends_when_its_host_is_gone(form, mp):
    needs_firmware_module(form, "interrupting a silent eval")
    p = subprocess.Popen([str(BIN / "mqboard"), "-p", str(mp.broker.port), "--prefix",
                          mp.prefix, "--lease", "2", "exec", "import time\ntime.sleep(60)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 10
        while mp.mqb("--nonblock", "eval", "1", check=False).returncode == 0:
            assert time.monotonic() < end, "the eval never started"
            time.sleep(0.1)
    finally:
        stop(p, signal.SIGKILL)  # no word to the board: its lease runs out
    end = time.monotonic() + 30
    while mp.mqb("--nonblock", "eval", "1", check=False).returncode != 0:
        assert time.monotonic() < end, "the eval outlived its lease"
        time.sleep(0.2)


def test_input_reads_the_keyboard_of_the_host_that_follows(mp):
    r = subprocess.run([str(BIN / "mqboard"), "-p", str(mp.broker.port), "--prefix", mp.prefix,
                        "exec", "a = input('a? ')\nb = input()\nprint(a + '+' + b)"],
                       input="one\ntwo\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "a? one+two\n"
    r = mp.mqb("exec", "input()", check=False)  # stdin is empty: end of file
    assert r.returncode == 1 and "EOFError" in r.stderr
    r = mp.mqb("--no-follow", "exec", "x = 1")
    assert mp.out("eval", "x") == "1\n"


def test_a_retained_command_never_runs(broker, tmp_path):
    """Issue 18: umqtt.simple drops the retain flag, so a retained eval on the board's command
    topic ran at every boot (a retained machine.reset() is a reboot loop). The board package
    reads the flag through the socket and drops retained commands."""
    prefix = "mp/" + uuid.uuid4().hex[:8]
    topic = f"{prefix}/mqb/cmd/eval/Retain01"
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-r", "-t", topic, "-s"],
                   input=b"\x80\x00open('/ran.txt', 'w').write('ran')", check=True)
    b = MpBoard(broker, tmp_path, prefix=prefix)  # it subscribes: the retained eval arrives
    try:
        b.mqb("reset")
        b.wait_ready()
        assert b.out("eval", "'ran.txt' in __import__('os').listdir('/')") == "False\n"
        assert b.out("eval", "2+2") == "4\n"  # a live eval runs
    finally:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-r",
                        "-t", topic, "-n"], check=True)
        b.stop()


def test_a_power_cut_during_puts_never_loses_the_file(broker, tmp_path):
    """Issue 18: the board removed the target and then renamed the temporary over it; killed
    between the two, /main.py was gone (4-7 times in 30). Now the rename replaces it (LittleFS)
    or a commit record finishes it at the next start (FAT), and temporaries are removed at
    start. Killed at random moments of 12 puts, the file is always old or new, whole (/app.py,
    the application: /main.py is the board package's own start now)."""
    import random
    rnd = random.Random(18)
    old, new = b"# old\n" * 40000, b"# new\n" * 40000
    image = tmp_path / "app.py"
    image.write_bytes(new)
    b = MpBoard(broker, tmp_path)
    b.mqb("put", str(image), "/app.py")
    for i in range(12):
        image.write_bytes(old if i % 2 else new)
        p = subprocess.Popen([str(BIN / "mqboard"), "-q", "-p", str(broker.port), "--prefix",
                              b.prefix, "put", str(image), "/app.py"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.0, 0.4))
        b.stopping = True
        if b.proc is not None and b.proc.poll() is None:
            os.kill(b.proc.pid, signal.SIGKILL)  # the power cut
        b.thread.join(timeout=10)
        b.log.close()
        p.wait(timeout=60)
        b = MpBoard(broker, tmp_path)
        got = b.mqb("sha256sum", "/app.py", check=False)
        assert got.returncode == 0, got.stderr  # the file is there
        digest = got.stdout.split()[0]
        assert digest in (hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest())
        assert b.out("eval", "len(__import__('os').listdir('/.mqb-tmp'))") == "0\n"
    b.stop()


def test_the_host_is_out_of_the_boards_reach(mp, tmp_path):
    """Issue 18: the unix launcher mounted the host's / at /host, so `ls -r /` failed on it and
    an rm -r of the board could reach the host. The emulated RTC memory and flash are now
    reached through a VfsPosix that is never mounted."""
    assert mp.out("eval", "sorted(__import__('os').listdir('/'))").find("host") < 0
    r = mp.mqb("ls", "-R", "/")
    assert r.returncode == 0 and "host" not in r.stdout
    image = tmp_path / "fw.bin"
    image.write_bytes(os.urandom(20000))
    assert "boots at the next reset" in mp.out("ota", str(image))  # the flash is still there
    assert (tmp_path / "ota" / "slot1").read_bytes() == image.read_bytes()


def test_what_imported_code_prints_reaches_the_host(mp, tmp_path):
    """Issue 18: only the eval's own print reached mqboard; an imported module's print went
    to the board's console (`mqboard run main.py` on a real project showed almost nothing)."""
    mod = tmp_path / "chatty.py"
    mod.write_text("print('imported and talking')\ndef hello():\n    print('hello', 42)\n")
    mp.mqb("put", str(mod), "/lib/chatty.py")
    r = mp.mqb("exec", "import chatty\nchatty.hello()")
    assert r.stdout == "imported and talking\nhello 42\n"
    assert mp.out("exec", "chatty.hello()") == "hello 42\n"  # each eval captures its own


def test_the_board_answers_the_discovery_question(mp, broker):
    """boards asks mqb/discover: the board answers with its status, not retained."""
    import paho.mqtt.client as mqtt
    got = []
    c = mqtt.Client()
    c.on_message = lambda cl, u, m: got.append((m.topic, m.retain))
    c.connect("127.0.0.1", broker.port)
    c.subscribe(mp.prefix + "/mqb/status", 0)
    c.loop_start()
    try:
        end = time.monotonic() + 10
        while not any(r for t, r in got) and time.monotonic() < end:
            time.sleep(0.05)  # the retained status first
        c.publish("mqb/discover", b"", 0)
        while not any(not r for t, r in got) and time.monotonic() < end:
            time.sleep(0.05)
        assert any(not r for t, r in got), got
    finally:
        c.loop_stop()
        c.disconnect()


def test_signed_commands_on_the_micropython_board(broker, tmp_path):
    """Issue 19 on the MicroPython board: with a key enrolled on the board itself it obeys
    only signed commands (checked by the firmware's mbedTLS), signs its status and replies,
    and keyboard input still works (its questions are signed)."""
    from test_trust import Operator, assert_strangers_refused
    op = Operator(tmp_path)
    b = MpBoard(broker, tmp_path, keys=True)
    try:
        if "key" not in (b.status() or {}):
            pytest.skip("this MicroPython firmware has no mbedTLS (its ssl module)")
        # Enrolment, as over the board's console: it has no authorized key yet.
        line = op.pub.read_text().strip()
        b.mqb("exec", f"f = open('/.mqb-keys/authorized_keys', 'w'); f.write({line!r}); "
                      "f.close()")
        b.mqb("reset")
        assert wait_for(lambda: op.mqb(b, "-T", "1", "eval", "1", check=False).returncode == 0,
                        20)
        assert "obeys signed commands only" in op.mqb(b, "status").stdout
        assert op.mqb(b, "eval", "6*7").stdout == "42\n"
        out = op.mqb(b, "exec", "for i in range(2000): print(i)").stdout  # chained replies
        assert out == "".join("%d\n" % i for i in range(2000))
        assert op.mqb(b, "exec", "print(input() * 2)", input="ab\n").stdout == "abab\n"
        src = tmp_path / "src"  # mount: the board's questions and the host's answers signed
        src.mkdir()
        (src / "hi.py").write_text("print('hi from a signed mount')\n")
        assert op.mqb(b, "mount", str(src), "+", "exec", "import hi").stdout == \
            "hi from a signed mount\n"
        # Signed transfers: the acknowledgements carry a signature after "SEQ n", which the
        # tool once read as more digits (acked too far, so it overran the board's window and
        # its bounded inbox: "sequence gap", 1 put in 2 failed).
        data = os.urandom(300_000)
        (tmp_path / "big.bin").write_bytes(data)
        for _ in range(3):
            op.mqb(b, "put", str(tmp_path / "big.bin"), "/big.bin")
            op.mqb(b, "get", "/big.bin", str(tmp_path / "back.bin"))
            assert (tmp_path / "back.bin").read_bytes() == data
        assert len(op.mqb(b, "trust", "list").stdout.split()) == 1
        # Rotation, with the rules mqrepld has (core/auth.c): a second key, then the first
        # one's removal by the second; never the last key; nonsense refused.
        two = Operator(tmp_path, "two")
        assert "authorized: SHA256:" in op.mqb(b, "trust", "add", str(two.pub)).stdout
        two.mqb(b, "status")  # records the board's key for the second operator
        assert two.mqb(b, "eval", "1+1").stdout == "2\n"
        fpr = op.run_mqb("key", "show", str(op.pub)).stdout.split()[0]
        assert "removed: " + fpr in two.mqb(b, "trust", "remove", fpr).stdout
        assert op.mqb(b, "eval", "1", check=False).returncode != 0  # revoked at once
        fpr2 = two.run_mqb("key", "show", str(two.pub)).stdout.split()[0]
        r = two.mqb(b, "trust", "remove", fpr2, check=False)
        assert r.returncode != 0 and "refusing to remove the last" in r.stderr
        r = two.mqb(b, "trust", "add", "/dev/null", check=False)
        assert r.returncode != 0
        assert two.mqb(b, "trust", "list").stdout.split() == [fpr2]
        # ... and the change was saved: it holds across a reset.
        two.mqb(b, "reset")
        assert wait_for(lambda: two.mqb(b, "-T", "1", "eval", "1", check=False).returncode == 0,
                        20)
        assert op.mqb(b, "-T", "2", "eval", "1", check=False).returncode != 0
        op = two
        assert_strangers_refused(b, tmp_path)  # the original tool's message, another key
        assert op.mqb(b, "exec", "import os; print('owned' in os.listdir('/'))").stdout == "False\n"
        # Power cut between the removal of authorized_keys and the rename of its new version
        # (trust add/remove on FAT): the next start finishes the rename; the board never comes
        # up obeying anyone.
        op.mqb(b, "exec", "import os; os.rename('/.mqb-keys/authorized_keys', "
                          "'/.mqb-keys/authorized_keys.new')")
        op.mqb(b, "reset")
        assert wait_for(lambda: op.mqb(b, "-T", "1", "eval", "1", check=False).returncode == 0,
                        20)
        assert "obeys signed commands only" in op.mqb(b, "status").stdout
    finally:
        b.stop()


def test_an_expired_command_is_refused_not_run(form, mp):
    """Issue 18: once its clock is set (the unix port's is), the MicroPython board checks the
    deadline in a command's id: a command delivered after it is answered, never run; a
    deadline ahead and an id without one (the original tool's) run. The status says whether
    the clock is set, and `mqboard status` says when it is not."""
    assert mp.status()["clock_set"] is True
    topic = f"{mp.prefix}/mqb/reply/err/Expired1.00000010"
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1", "-p",
                            str(mp.broker.port),
                            "-q", "1", "-C", "1", "-W", "30", "-v", "-t", topic],
                           stdout=subprocess.PIPE, text=True)
    try:
        for line in sub.stdout:  # its SUBACK: the answer cannot be missed
            if "SUBACK" in line:
                break

        def pub(tail, code):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mp.broker.port), "-q",
                            "1", "-t", f"{mp.prefix}/mqb/cmd/eval/{tail}", "-s"],
                           input=b"\x80\x00" + code, check=True)

        pub("Expired1.00000010", b"open('/exp_late', 'w').write('x')")
        answer = "".join(line for line in sub.stdout if topic in line)
        when = "1970-01-01 00:00:16 UTC" if form == "firmware" else "Unix time 16"
        assert "command expired: it had to start by " + when in answer
    finally:
        sub.kill()
        sub.wait()
    future = "%08x" % (int(time.time()) + 600)
    pub(f"Future01.{future}", b"open('/exp_ahead', 'w').write('x')")
    pub("Original", b"open('/exp_none', 'w').write('x')")
    assert wait_for(lambda: mp.out("eval", "sorted(f for f in __import__('os').listdir('/') "
                                           "if f.startswith('exp_'))") ==
                    "['exp_ahead', 'exp_none']\n", 20)
    assert "clock not set" not in mp.mqb("status").stdout


def test_firmware_needs_a_release_signature_on_the_micropython_board(broker, tmp_path):
    """Issue 19 on the MicroPython board: with release keys (KEYS/release_keys) an ota image
    is installed only with a release signature over its hash and version, and never below the
    version recorded unless asked for: the core's rule, checked with the firmware's mbedTLS
    before the new slot is made bootable (the engine's ota_check, whatever the OTA target)."""
    from test_trust import Operator
    op, release = Operator(tmp_path), Operator(tmp_path, "release")
    b = MpBoard(broker, tmp_path, keys=True)
    try:
        if "key" not in (b.status() or {}):
            pytest.skip("this MicroPython firmware has no mbedTLS (its ssl module)")
        for name, who in (("authorized_keys", op), ("release_keys", release)):
            line = who.pub.read_text().strip()
            b.mqb("exec", f"f = open('/.mqb-keys/{name}', 'w'); f.write({line!r}); f.close()")
        b.mqb("reset")
        assert wait_for(lambda: op.mqb(b, "-T", "1", "eval", "1", check=False).returncode == 0,
                        20)
        image = tmp_path / "image"
        image.write_bytes(os.urandom(300_000))

        def ota(*args):
            return op.mqb(b, "ota", *args, str(image), check=False)

        def installed():
            return any(p.read_bytes() == image.read_bytes()
                       for p in (tmp_path / "ota").glob("slot*"))

        def recorded():
            return op.mqb(b, "exec", "print(open('/.mqb-keys/image_version').read().strip())",
                          check=False).stdout.strip()

        r = ota()
        assert r.returncode == 1 and "not signed by a release key" in r.stderr
        assert op.run_mqb("key", "sign", str(image), "5").returncode == 0  # not a release key
        r = ota()
        assert r.returncode == 1 and "bad release signature" in r.stderr
        assert not installed()
        assert release.run_mqb("key", "sign", str(image), "5").returncode == 0
        r = ota()
        assert r.returncode == 0, r.stderr
        assert installed() and recorded() == "5"
        assert release.run_mqb("key", "sign", str(image), "4").returncode == 0
        r = ota()
        assert r.returncode == 1 and "below the board's" in r.stderr
        r = ota("--allow-downgrade")
        assert r.returncode == 0, r.stderr
        assert recorded() == "4"
    finally:
        b.stop()


# ---- updating the board package over MQTT (board/main.py) ----

def test_a_package_update_is_tried_then_kept_or_rolled_back(broker, tmp_path):
    """An update put into /mqb.new runs once on trial: confirmed after ALLOK it becomes /mqb
    and stays across resets; one that cannot start is rolled back at the next start."""
    b = MpBoard(broker, tmp_path, wdt=2, allok=3)
    try:
        new = tmp_path / "new"
        new.mkdir()
        for f in [*(REPO / "ports/micropython/board").glob("mqb_*.py")] + \
                ([Path(MPY)] if MPY else []):  # an update is the whole package
            if f.name != "mqb_unix.py":
                shutil.copy(f, new)
        agent = new / "mqb_agent.py"
        agent.write_text(agent.read_text().replace('VERSION = "', 'VERSION = "9.9.9-new+'))
        b.mqb("put", "-r", str(new) + "/", ":/mqb.new")
        b.mqb("reset")
        b.wait_ready(check=lambda: "9.9.9-new" in (b.status() or {}).get("agent", ""))
        listing = lambda: b.out("exec", "import os\nprint(sorted(os.listdir('/')))")  # noqa
        assert wait_for(lambda: "'mqb.new'" not in listing(), 20), listing()
        b.mqb("reset")
        b.wait_ready()
        assert "9.9.9-new" in b.status()["agent"]  # confirmed: it stays
        # An update that cannot start: the board comes back with the package it had.
        agent.write_text("raise ImportError('a broken update')\n")
        b.mqb("put", "-r", str(new) + "/", ":/mqb.new")
        boot = b.status()["boot_id"]
        b.mqb("reset")
        b.wait_ready(timeout=30, check=lambda: (b.status() or {}).get("boot_id") != boot)
        assert "9.9.9-new" in b.status()["agent"]
        assert "'mqb.new'" not in listing()
        assert "a broken update" in (tmp_path / "micropython.log").read_text()
    finally:
        b.stop()


# ---- mount: the host's directory as /remote (mqb_remote) ----

@pytest.fixture
def local(tmp_path):
    d = tmp_path / "local"
    (d / "pkg").mkdir(parents=True)
    (d / "mymod.py").write_text("def hi():\n    return 'hi from the host'\n")
    (d / "pkg" / "__init__.py").write_text("X = 5\n")
    (d / "pkg" / "sub.py").write_text("from . import X\nY = X + 1\n")
    (d / "data.txt").write_text("local data\n" * 1000)
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", d / "out-link")
    return d


def test_mount_import_read_list_and_cwd(mp, local):
    r = mp.mqb("mount", str(local), "+", "exec",
               "import mymod, pkg.sub, os\nprint(mymod.hi(), pkg.X, pkg.sub.Y)\n"
               "print(len(open('/remote/data.txt').read()), open('data.txt').readline().strip())\n"
               "print(sorted(os.listdir('/remote')), os.getcwd())\n"
               "print(os.stat('/remote/pkg')[0] & 0x4000 != 0)")
    assert r.stdout == ("hi from the host 5 6\n11000 local data\n"
                        "['data.txt', 'mymod.py', 'pkg'] /remote\nTrue\n")
    assert "mounted at /remote" in r.stderr
    # Ended with mqboard: /remote is gone, the working directory is the board's again, and
    # the board's own listing never showed the host's files.
    r = mp.mqb("exec", "import os\nprint(os.getcwd(), 'remote' in os.listdir('/'))\n"
               "open('/remote/data.txt')", check=False)
    assert r.stdout == "/ False\n" and "OSError" in r.stderr


def test_mount_is_read_only_unless_rw_and_stays_inside(mp, local, tmp_path):
    r = mp.mqb("mount", str(local), "+", "exec", "open('/remote/new.txt', 'w').write('x')",
               check=False)
    assert r.returncode == 1 and "EROFS" in r.stderr, r.stderr
    assert not (local / "new.txt").exists()
    mp.mqb("mount", "--rw", str(local), "+", "exec",
           "f = open('/remote/new.txt', 'w')\nf.write('written ' * 2000)\nf.close()\n"
           "import os\nos.mkdir('/remote/d')\nos.rename('/remote/new.txt', '/remote/d/n.txt')\n"
           "os.remove('/remote/data.txt')")
    assert (local / "d" / "n.txt").read_text() == "written " * 2000
    assert not (local / "data.txt").exists()
    r = mp.mqb("mount", "--rw", str(local), "+", "exec", "open('/remote/out-link').read()",
               check=False)
    assert r.returncode == 1 and "EACCES" in r.stderr, r.stderr
    r = mp.mqb("mount", "--rw", str(local), "+", "exec", "open('/remote/../secret.txt').read()",
               check=False)
    assert r.returncode == 1 and (tmp_path / "secret.txt").read_text() == "outside\n"


def test_mount_edit_run_loop_and_input_from_a_module(mp, local):
    (local / "hello.py").write_text("print('first')\n")
    assert mp.out("mount", str(local), "+", "exec", "import hello") == "first\n"
    (local / "hello.py").write_text("print('second', input('name? '))\n")
    r = subprocess.run([str(BIN / "mqboard"), "-p", str(mp.broker.port), "--prefix", mp.prefix,
                        "mount", str(local), "+", "exec", "import hello"], input="board\n",
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "name? second board\n", (r.stdout, r.stderr)


def test_mount_of_a_vanished_host_ends_with_its_lease(form, mp, local):
    needs_firmware_module(form, "interrupting a silent eval")
    p = subprocess.Popen([str(BIN / "mqboard"), "-p", str(mp.broker.port), "--prefix",
                          mp.prefix, "--lease", "2", "mount", str(local), "+", "exec",
                          "import time\nwhile True: time.sleep(0.1)"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: mp.mqb("--nonblock", "eval", "1", check=False).returncode != 0,
                        10)
    finally:
        stop(p, signal.SIGKILL)  # no word to the board: both leases run out
    assert wait_for(lambda: mp.mqb("exec", "import os\nprint('remote' in os.listdir('/') or "
                                   "os.stat('/remote') and 1)", check=False).returncode == 1,
                    30)


# ---- the board package's esp32 code, on the esp32 stand-in (tests/e2e/esp32_standin) ----

STANDIN = REPO / "tests/e2e/esp32_standin"
SLOT = 256 * 4096


class Esp32Board(MpBoard):
    """The board package with the esp32/machine stand-in on the unix port, so that its esp32
    code runs (esp32.Partition OTA, set_boot, mark_app_valid_cancel_rollback, machine.WDT,
    machine.RTC().memory()). This launcher is the chip: its bootloader picks the app partition
    from otadata and rolls back an app that was booted and reset before it was marked valid
    (ESP-IDF with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE); a soft reset skips the bootloader;
    RTC memory is cleared at power-on only; the watchdog kills the process once its deadline
    passed; SIGKILL of the process by a test is a power cut. An image whose bytes say PANIC
    crashes at start, one that says HANG hangs at start with the watchdog armed."""

    def __init__(self, broker, tmp, **kw):
        self.esp = tmp / "esp32"
        self.esp.mkdir(exist_ok=True)
        (self.esp / "ota_0").write_bytes(b"\xe9FACTORY".ljust(SLOT, b"\xff"))
        (self.esp / "ota_1").write_bytes(b"\xff" * SLOT)
        (self.esp / "otadata").write_text("boot=ota_0\nota_0=valid\nota_1=empty\n")
        self.boots = []  # (partition, reset cause) of every start
        super().__init__(broker, tmp, files=STANDIN.glob("*.py"),
                         env={"MQB_ESP32_DIR": str(self.esp)}, **kw)

    def otadata(self):
        return dict(line.split("=", 1) for line in (self.esp / "otadata").read_text().split())

    def _bootloader(self):
        d = self.otadata()
        slot = d["boot"]
        other = "ota_1" if slot == "ota_0" else "ota_0"
        if d[slot] == "new":
            d[slot] = "pending_verify"
        elif d[slot] != "valid":  # booted and reset without being marked valid: roll back
            d[slot] = "aborted"
            slot = d["boot"] = other
        (self.esp / "otadata").write_text("".join(f"{k}={v}\n" for k, v in d.items()))
        return slot

    def _run(self, slot, cause):
        """One run of the app in slot; returns how it ended: 77, 78 (watchdog), 79, or None
        (a power cut: killed by the test)."""
        (self.esp / "wdt").unlink(missing_ok=True)
        image = (self.esp / slot).read_bytes()[:16]
        env = dict(self.env, MQB_RESET_CAUSE=cause, MQB_ESP32_RUNNING=slot)
        args = [MP, str(self.pkg / "mqb_unix.py")]
        if b"PANIC" in image:
            args = [MP, "-c", "import sys; sys.exit(77)"]
        elif b"HANG" in image:
            args = [MP, "-c", "import machine, time; machine.WDT(timeout=1000); time.sleep(600)"]
        self.boots.append((slot, cause))
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        while True:
            try:
                rc = self.proc.wait(timeout=0.05)
                return rc if rc in (77, 78, 79) else None
            except subprocess.TimeoutExpired:
                pass
            try:
                deadline = float((self.esp / "wdt").read_text())
            except (OSError, ValueError):
                continue
            if time.time() > deadline:
                stop(self.proc, signal.SIGKILL)
                return 78

    def _launcher(self):
        cause, slot = "1", None
        for _ in range(50):  # a board that keeps crashing stops here
            if self.stopping:
                return
            if cause == "1":
                (self.esp / "rtc_memory").unlink(missing_ok=True)
            if cause != "5":  # a soft reset restarts the interpreter, not the chip
                slot = self._bootloader()
            rc = self._run(slot, cause)
            cause = {77: "2", 78: "3", 79: "5"}.get(rc, "1")


@pytest.fixture
def esp(broker, tmp_path):
    b = Esp32Board(broker, tmp_path, wdt=2, allok=3)
    yield b
    b.stop()


def esp_image(tmp_path, tag=b"GOOD", size=300 * 1024):
    image = tmp_path / ("image-" + tag.decode())
    image.write_bytes(b"\xe9" + tag + os.urandom(size))
    return image


def test_esp32_ota_is_confirmed_after_allok(esp, tmp_path):
    image = esp_image(tmp_path)
    assert esp.status()["slot"] == 0
    r = esp.mqb("ota", "--confirm", "--wait", "60", str(image))
    assert r.stdout.startswith("updated: slot 0 -> 1, image valid"), r.stdout
    assert esp.otadata() == {"boot": "ota_1", "ota_0": "valid", "ota_1": "valid"}
    assert (esp.esp / "ota_1").read_bytes()[:image.stat().st_size] == image.read_bytes()
    assert esp.boots[-1] == ("ota_1", "2")
    assert esp.out("eval", "1+1") == "2\n"


@pytest.mark.parametrize("tag", [b"PANIC", b"HANG"])
def test_esp32_an_image_that_does_not_come_up_is_rolled_back(esp, tmp_path, tag):
    image = esp_image(tmp_path, tag)
    r = esp.mqb("ota", "--confirm", "--wait", "60", str(image), check=False)
    assert r.returncode == 1 and "rolled back: slot 0 -> 0" in r.stderr, (r.stdout, r.stderr)
    assert esp.otadata() == {"boot": "ota_0", "ota_0": "valid", "ota_1": "aborted"}
    assert ("ota_1", "2") in esp.boots and esp.boots[-1][0] == "ota_0"
    assert esp.status()["slot"] == 0 and esp.out("eval", "1+1") == "2\n"


def test_esp32_an_image_the_firmware_refuses_changes_nothing(esp, tmp_path):
    image = tmp_path / "not-an-esp-image"
    image.write_bytes(os.urandom(100 * 1024).replace(b"\xe9", b"\x00"))
    r = esp.mqb("ota", str(image), check=False)
    assert r.returncode == 1 and "ota: I/O error" in r.stderr, r.stderr
    assert esp.otadata()["boot"] == "ota_0"
    assert esp.out("eval", "1+1") == "2\n"


def test_esp32_power_cut_during_the_ota_write(esp, tmp_path):
    image = esp_image(tmp_path, size=900 * 1024)
    empty = b"\xff" * 4096
    p = subprocess.Popen([str(BIN / "mqboard"), "-q", "-p", str(esp.broker.port), "--prefix",
                          esp.prefix, "ota", str(image)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: (esp.esp / "ota_1").read_bytes()[8 * 4096:9 * 4096] != empty,
                        30), "the image never reached the partition"
        stop(esp.proc, signal.SIGKILL)  # the power goes
    finally:
        stop(p, signal.SIGKILL)
    esp.wait_ready()
    assert esp.boots[-1] == ("ota_0", "1")
    assert esp.otadata() == {"boot": "ota_0", "ota_0": "valid", "ota_1": "empty"}
    r = esp.mqb("ota", "--confirm", "--wait", "60", str(esp_image(tmp_path)))
    assert r.stdout.startswith("updated: slot 0 -> 1"), r.stdout


def test_esp32_safe_mode_and_watchdog_across_resets(broker, tmp_path):
    b = Esp32Board(broker, tmp_path, wdt=2, allok=300)
    try:
        b.mqb("reset", "--safe")
        b.wait_ready()
        st = b.status()
        assert st["mode"] == "safe" and st["reset_cause"] == "hard"
        assert (b.esp / "rtc_memory").exists()
        b.mqb("reset", "--soft")
        st = b.status()
        assert st["mode"] == "normal" and st["reset_cause"] == "soft"
        boot = st["boot_id"]
        # Held in C (no bytecode runs, no feed goes out): the hardware watchdog resets it, and
        # a boot that never earned normal mode comes back in safe mode.
        b.mqb("--no-follow", "exec", "sum(range(10**11))")
        b.wait_ready(timeout=30, check=lambda: (b.status() or {}).get("boot_id") != boot)
        st = b.status()
        assert st["reset_cause"] == "watchdog" and st["mode"] == "safe", st
    finally:
        b.stop()
