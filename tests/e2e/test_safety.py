"""Nothing lost, nothing escaped (issue 10): the board root and the admin's directories hold,
bad input on either side gets a clear error and never a crash, OTA never bricks, and the
shipped broker configuration works. Each test reproduces a defect that was found."""

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
import signal
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import BIN, Board, Broker, board_files, stop

ROOT = "/"


def mqb_raw(broker, prefix, *args, timeout=30):
    return subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", prefix,
                           *args], capture_output=True, text=True, timeout=timeout)


def pub(broker, topic, payload, retain=False):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-t", topic, "-s" if payload else "-n"] + (["-r"] if retain else []),
                   input=payload, check=True)


# ---- the board root ----

@pytest.mark.parametrize("path", ["/.", "/./", "/lib/..", "/x/..", "//", "lib/../.."])
def test_rm_r_never_removes_the_root(board, path):
    (board.root / "lib").mkdir()
    (board.root / "keep.py").write_text("keep")
    r = board.mqb("rm", "-r", path, check=False, text=True)
    assert r.returncode == 2 and "refusing to remove the board's root" in r.stderr
    assert (board.root / "keep.py").read_text() == "keep"
    # And the board itself refuses, whatever program asks.
    r = board.mqb("exec", "import uos\nuos.rmdir('/lib/..')", check=False, text=True)
    assert r.returncode == 1 and board.root.is_dir()


def test_symlinks_out_of_the_root_are_never_followed(board, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("mine")
    os.symlink(victim, board.root / "link")
    os.symlink(victim / "precious", board.root / "flink")
    (board.root / "inside.txt").write_text("in")
    os.symlink("inside.txt", board.root / "ilink")
    assert "precious" not in board.out("ls", "-r", "/")
    assert "precious" not in board.out("tree")
    for cmd in (["cat", "/link/precious"], ["cat", "/flink"], ["get", "/flink", "-"],
                ["eval", "open('/link/precious').read()"],
                ["eval", "import os; os.listdir('/link')"]):
        r = board.mqb(*cmd, check=False, text=True)
        assert r.returncode == 1 and "mine" not in r.stdout, cmd
    assert board.out("eval", "open('/ilink').read()") == "'in'\n"  # inside the root: fine
    board.mqb("rm", "-r", "/link")
    board.mqb("rm", "-r", "/flink")
    assert (victim / "precious").read_text() == "mine"
    assert not os.path.lexists(board.root / "link")


def test_board_os_time_gc_are_the_boards(board):
    (board.root / "mine.txt").write_text("x")
    assert board.out("eval", "import os; sorted(os.listdir('/'))") == "['mine.txt']\n"
    assert board.out("eval", "import time; time.ticks_diff(time.ticks_ms(), 0) >= 0") == "True\n"
    assert board.out("eval", "import gc; gc.mem_free() > 0 and gc.mem_alloc() > 0") == "True\n"
    assert board.out("eval", "from os import getcwd; getcwd()") == "'/'\n"


def test_temporary_files_are_never_a_users(board):
    # A user's file that looks like an old temporary name survives a restart.
    (board.root / ".notes.txt.abc123.mqb-tmp").write_text("user data")
    board.stop()
    board.start()
    assert (board.root / ".notes.txt.abc123.mqb-tmp").read_text() == "user data"
    # Names of 240-255 bytes can be put.
    src = board.tmp / "src"
    src.write_bytes(b"long")
    name = "n" * 255
    board.mqb("put", str(src), "/" + name)
    assert (board.root / name).read_bytes() == b"long"
    # The agent's directory is neither listed nor reachable.
    assert ".mqb-tmp/" not in board.out("ls", "-r", "/").splitlines()
    r = board.mqb("put", str(src), "/.mqb-tmp/x", check=False, text=True)
    assert r.returncode == 1 and "permission denied" in r.stderr


def test_abandoned_put_is_hidden_and_cleaned(board):
    (board.root / "app.py").write_bytes(b"old")
    topic = f"{board.prefix}/mqb/cmd/put/Aband001/app.py"
    pub(board.broker, topic, b"\x00\x00half of it")
    time.sleep(0.5)
    assert board.out("ls") == "app.py\n"
    board.stop(signal.SIGKILL)
    board.start()
    assert board_files(board.root / ".mqb-tmp") == []
    assert (board.root / "app.py").read_bytes() == b"old"


def test_get_of_a_fifo_does_not_block_the_board(board):
    os.mkfifo(board.root / "fifo")
    r = board.mqb("-T", "3", "get", "/fifo", "-", check=False, text=True)
    assert r.returncode == 1 and "not a regular file" in r.stderr
    assert board.out("eval", "1") == "1\n"


# ---- the admin's side: tree copies ----

def test_get_r_never_writes_outside_local(board, tmp_path):
    (board.root / "d").mkdir()
    (board.root / "d/ok.txt").write_text("ok")
    # Code on the board lies in its listings.
    board.mqb("exec", "import uos\n_real=uos.ilistdir\n"
                      "def _lie(d='.'):\n"
                      "  yield ('../../../evil.txt', 0x8000, 0, 4)\n"
                      "  yield from _real(d)\n"
                      "uos.ilistdir=_lie")
    out = tmp_path / "deep/er/out"
    r = board.mqb("get", "-r", "/d", str(out), check=False, text=True)
    assert r.returncode == 1 and "skipped" in r.stderr
    assert (out / "d/ok.txt").read_text() == "ok"
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_get_temp_file_is_never_a_planted_symlink(board, tmp_path):
    (board.root / "f.txt").write_text("new")
    victim = tmp_path / "victim"
    victim.write_text("victim")
    local = tmp_path / "f.txt"
    os.symlink(victim, tmp_path / "f.txt.mqb-part")
    board.mqb("get", "/f.txt", str(local))
    assert local.read_text() == "new" and victim.read_text() == "victim"
    assert [p.name for p in tmp_path.iterdir() if "mqb-part" in p.name and
            not p.is_symlink()] == []


def test_sync_of_a_missing_local_dir_deletes_nothing(board, tmp_path):
    (board.root / "app").mkdir()
    (board.root / "app/main.py").write_text("keep")
    for local in (tmp_path / "nonexistent_typo", tmp_path / "file"):
        if local.name == "file":
            local.write_text("x")
        r = board.mqb("sync", "--delete", str(local), "/app", check=False, text=True)
        assert r.returncode == 5 and "is not a local directory" in r.stderr
    assert (board.root / "app/main.py").read_text() == "keep"


def test_sync_delete_never_leaves_remote(board, tmp_path):
    (board.root / "app").mkdir()
    (board.root / "top.py").write_text("keep")
    (tmp_path / "src").mkdir()
    board.mqb("exec", "import uos\n_real=uos.ilistdir\n"
                      "def _lie(d='.'):\n"
                      "  yield ('../top.py', 0x8000, 0, 4)\n"
                      "  yield from _real(d)\n"
                      "uos.ilistdir=_lie")
    board.mqb("sync", "--delete", str(tmp_path / "src"), "/app", check=False)
    assert (board.root / "top.py").read_text() == "keep"


def test_readme_put_r_trailing_slash(board, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mylib.py").write_text("lib")
    os.chdir(tmp_path)
    board.mqb("put", "-r", "lib/", "/lib/")  # the README's example
    assert (board.root / "lib/mylib.py").read_text() == "lib"
    assert not (board.root / "lib/lib").exists()


def test_mv_names_the_right_path_and_needs_dirs(board):
    (board.root / "v.py").write_text("v")
    r = board.mqb("mv", "/v.py", "/missingdir/v.py", check=False, text=True)
    assert r.returncode == 1 and "/missingdir/v.py" in r.stderr
    r = board.mqb("mv", "/v.py", "/nodir/", check=False, text=True)
    assert r.returncode == 1 and "/nodir/" in r.stderr
    assert not (board.root / "nodir").exists() and (board.root / "v.py").exists()
    r = board.mqb("mv", "/gone.py", "/x.py", check=False, text=True)
    assert r.returncode == 1 and "/gone.py" in r.stderr
    (board.root / "dir").mkdir()
    board.mqb("mv", "/v.py", "/dir")
    assert (board.root / "dir/v.py").read_text() == "v"


def test_put_into_an_existing_directory(board, tmp_path):
    (board.root / "existingdir").mkdir()
    f = tmp_path / "file.py"
    f.write_text("f")
    board.mqb("put", str(f), "/existingdir")
    assert (board.root / "existingdir/file.py").read_text() == "f"


def test_tree_copies_name_what_they_skip_and_go_on(board, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.py", "b+c.py", "d#e.py", "z.py"):
        (src / name).write_text(name)
    r = board.mqb("put", "-r", str(src) + "/", "/t", check=False, text=True)
    assert r.returncode == 1 and "b+c.py" in r.stderr and "d#e.py" in r.stderr
    assert board_files(board.root / "t") == ["a.py", "z.py"]
    (board.root / "t/p+q.py").write_text("pq")
    r = board.mqb("get", "-r", "/t", str(tmp_path / "back"), check=False, text=True)
    assert r.returncode == 1 and "p+q.py" in r.stderr
    assert board_files(tmp_path / "back/t") == ["a.py", "z.py"]
    r = board.mqb("sync", str(src), "/t2", check=False, text=True)
    assert r.returncode == 1 and "b+c.py" in r.stderr and "2 put" in r.stdout


# ---- hostile input to the agent ----

def test_eval_queue_is_bounded(board):
    p = subprocess.Popen(board.mqb_args("exec", "import time\ntime.sleep(3)"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    errs = []
    c = mqtt.Client()
    c.on_message = lambda cl, u, m: errs.append(m.payload)
    c.connect("127.0.0.1", board.broker.port)
    c.subscribe(f"{board.prefix}/mqb/reply/err/#", 1)
    c.loop_start()
    for i in range(300):
        c.publish(f"{board.prefix}/mqb/cmd/eval/F{i:07d}", b"\x80\x00" + b"x=1" * 1000, qos=1)
    end = time.monotonic() + 10
    while time.monotonic() < end and not any(b"too many evals queued" in e for e in errs):
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    assert any(b"too many evals queued" in e for e in errs)
    p.wait(timeout=60)
    board.wait_ready(timeout=60)


def test_empty_and_bad_payloads_keep_the_agent_up(board):
    pub(board.broker, f"{board.prefix}/repl/in", b"")
    for topic in ("mqb/cmd/eval/E1", "mqb/cmd/put/E2/x", "mqb/cmd/xget/E3/x",
                  "mqb/cmd/interrupt/E4", "mqb/cmd/running/E5", "mqb/cmd/reset/E6",
                  "mqb/cmd/ack/E7", "mqb/cmd/ota/E8/zz"):
        for payload in (b"", b"\x00", b"\xff\xff\xff", b"\x00\x05garbage"):
            pub(board.broker, f"{board.prefix}/{topic}", payload)
    assert board.proc.poll() is None
    assert board.out("eval", "7") == "7\n"
    assert board.status()["mode"] == "normal"  # reset E6 had a bad mode: nothing happened


def test_interrupt_hits_only_the_eval_it_names(board):
    c = mqtt.Client()
    c.connect("127.0.0.1", board.broker.port)
    c.loop_start()
    failures = []
    for i in range(40):
        # An interrupt that names an eval that has already finished arrives late.
        c.publish(f"{board.prefix}/mqb/cmd/interrupt/I{i:05d}/Done{i:04d}", b"\xff\xff", qos=1)
        r = board.mqb("eval", "sum(range(20000))", check=False, text=True)
        if r.returncode != 0:
            failures.append(r.stderr)
    c.loop_stop()
    c.disconnect()
    assert failures == []


def test_feed_cannot_be_blocked_or_forged_by_0f00d(broker, tmp_path):
    b = Board(broker, tmp_path, "--wdt-timeout", "1.5", "--allok", "1")
    try:
        b.wait_ready(check=lambda: b.status()["mode"] == "normal")
        boot = b.status()["boot_id"]
        # The original's fixed feed id, opened and never finished.
        pub(broker, f"{b.prefix}/mqb/cmd/eval/0F00D/", b"\x00\x00watchdog.feed(")
        time.sleep(4)
        st = b.status()
        assert st["boot_id"] == boot and st["mode"] == "normal"
    finally:
        b.stop()


def test_watchdog_require_bounds_and_status(board):
    r = board.mqb("eval", "watchdog.require('x', 5000000)", check=False, text=True)
    assert r.returncode == 1 and "ValueError" in r.stderr
    st = json.loads(board.out("eval", "import json; json.dumps(watchdog.status())").strip()[1:-1])
    assert st["enabled"] is True and st["timeout"] == 300 and "checks" in st


# ---- hostile input to the tool: a fake board ----

class FakeBoard:
    """Answers the tool's commands with what a test gives it (a compromised board)."""

    def __init__(self, broker, prefix, answer):
        self.prefix, self.answer = prefix, answer
        self.c = mqtt.Client()
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", broker.port)
        self.c.subscribe(f"{prefix}/mqb/cmd/#", 1)
        self.c.publish(f"{prefix}/mqb/status", json.dumps({"status": "online"}), 1,
                       retain=True)
        self.c.loop_start()

    def on_message(self, c, u, m):
        parts = m.topic[len(self.prefix) + 1:].split("/")
        cmd, cid = parts[2], parts[3]
        for kind, payload in self.answer(cmd, m.payload):
            c.publish(f"{self.prefix}/mqb/reply/{kind}/{cid}", payload, 1)

    def close(self):
        self.c.publish(f"{self.prefix}/mqb/status", b"", 1, retain=True)
        self.c.loop_stop()
        self.c.disconnect()


HDR1 = b"\xff\xff"


@pytest.mark.parametrize("caps", [{"proto": 2, "chunk": 65536, "window": 4294967296},
                                  {"proto": 2, "chunk": 1e18, "window": 16},
                                  {"proto": 2, "chunk": 2 ** 64, "window": 2 ** 64},
                                  {"proto": "x"}, [1, 2]])
def test_tool_survives_hostile_caps(broker, tmp_path, caps):
    def answer(cmd, payload):
        if cmd == "caps":
            return [("out", HDR1 + json.dumps(caps).encode())]
        return [("err", b"no such file or directory")]
    fake = FakeBoard(broker, "fake/caps", answer)
    try:
        f = tmp_path / "f"
        f.write_bytes(b"data")
        for args in (["-T", "1", "get", "/x", str(tmp_path / "out")],
                     ["-T", "1", "put", str(f), "/x"]):
            r = mqb_raw(broker, "fake/caps", *args)
            assert r.returncode in (1, 3), (args, r.returncode, r.stderr)
    finally:
        fake.close()


def test_tool_survives_hostile_replies(broker, tmp_path):
    replies = {"df": [("out", HDR1 + b"[1]\n")], "empty": [("out", b"")],
               "esc": [("err", b"boom \x1b[2J\x1b]52;c;aGk=\x07 \xff\xfe na\xc3\xafve")]}
    which = {}

    def answer(cmd, payload):
        return replies[which["r"]] if cmd == "eval" else [("err", b"Command not supported")]
    fake = FakeBoard(broker, "fake/replies", answer)
    try:
        which["r"] = "df"
        r = mqb_raw(broker, "fake/replies", "-T", "1", "df")
        assert r.returncode in (0, 1) and "statvfs" in r.stderr
        which["r"] = "empty"
        r = mqb_raw(broker, "fake/replies", "-T", "1", "eval", "1")
        assert r.returncode == 1 and "without a header" in r.stderr
        which["r"] = "esc"
        r = mqb_raw(broker, "fake/replies", "-T", "1", "eval", "1")
        assert r.returncode == 1 and "\x1b" not in r.stderr and "\\x1b[2J" in r.stderr
        assert "\\xff\\xfe naïve" in r.stderr  # not UTF-8: escaped; UTF-8: kept
    finally:
        fake.close()


def test_json_is_json_whatever_the_board_sends(broker):
    """Bytes that are not UTF-8, a NUL and C1 controls from a board: --json stays a document
    a strict parser takes, nothing is cut at the NUL; the terminal gets C1 escaped."""
    out = b"a\xff\xfe\x00b \xc2\x9b2J \xed\xa0\x80 \xc0\xaf end"

    def answer(cmd, payload):
        return [("out", HDR1 + out)] if cmd == "eval" else [("err", b"Command not supported")]
    fake = FakeBoard(broker, "fake/json", answer)
    try:
        for cmd in (["exec", "x=1"], ["eval", "1"]):
            r = subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "--prefix",
                                "fake/json", "-T", "1", "--json", *cmd], capture_output=True)
            doc = json.loads(r.stdout.decode("utf-8", errors="strict"))  # strict: raises
            text = doc["output"] + (doc["result"] or "")
            assert "a\ufffd\ufffd\x00b" in text and text.rstrip().endswith("end"), doc
        # A status with such bytes: boards --json and status --json are still JSON.
        pub(broker, "fake/json2/mqb/status", b'{"status":"online","agent":"x\xff\xc2\x9d"}',
            retain=True)
        for args in (["--prefix", "fake/json2", "--json", "status"],
                     ["--json", "boards", "fake/json2"]):
            r = subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "-T", "1", *args],
                               capture_output=True)
            json.loads(r.stdout.decode("utf-8", errors="strict"))
        r = mqb_raw(broker, "fake/json2", "-T", "1", "status")  # C1 OSC escaped on a terminal
        assert "\x9d" not in r.stdout and "\\xc2\\x9d" in r.stdout, r.stdout
    finally:
        fake.close()
        pub(broker, "fake/json2/mqb/status", b"", retain=True)


def test_json_output_is_bounded(board):
    """More output than --json keeps: mqboard keeps 8 MiB and says how much it dropped,
    instead of holding it all (300 MiB took it to 392 MiB). 12 MiB stays under the broker's
    queue of 1000 messages for a slow reader (a sanitizer build reads slowly)."""
    r = board.mqb("--json", "exec", "for i in range(12): print('x' * ((1 << 20) - 1))",
                  timeout=300)
    doc = json.loads(r.stdout)
    assert len(doc["output"]) == 8 << 20 and doc["output_dropped_bytes"] == 4 << 20
    if "ASAN_OPTIONS" not in os.environ:  # the sanitizer's own memory is no measure
        assert doc["peak_rss_kb"] < 48 * 1024


@pytest.mark.parametrize("status", [b'{"status":"online","boot_time":1e17}', b"[1]", b"\xff",
                                    b'{"status":"online","agent":"\\u001b[2Jx"}'])
def test_tool_survives_hostile_status(broker, status):
    prefix = "fake/status"
    pub(broker, f"{prefix}/mqb/status", status, retain=True)
    try:
        r = mqb_raw(broker, prefix, "status")
        assert r.returncode in (0, 1) and "\x1b" not in r.stdout
    finally:
        pub(broker, f"{prefix}/mqb/status", b"", retain=True)


# ---- OTA never bricks ----

def test_ota_refused_while_the_running_image_is_pending(broker, tmp_path):
    from test_recovery import newer_build, read_record, NEW, PENDING
    b = Board(broker, tmp_path, "--wdt-timeout", "2", "--allok", "60",
              "--slots", str(tmp_path / "slots"))
    slots = tmp_path / "slots"
    try:
        b.out("ota", str(newer_build(tmp_path)))
        assert read_record(slots)[1:3] == (1, NEW)
        b.mqb("reset")
        b.wait_ready(check=lambda: read_record(slots)[1:3] == (1, PENDING))
        before = [(slots / f"otadata{i}").read_bytes() for i in (0, 1)]
        slot0 = (slots / "slot0").read_bytes()
        r = b.mqb("ota", str(newer_build(tmp_path)), check=False, text=True)
        assert r.returncode == 1 and "not yet confirmed" in r.stderr
        assert [(slots / f"otadata{i}").read_bytes() for i in (0, 1)] == before
        assert (slots / "slot0").read_bytes() == slot0
    finally:
        b.stop()


def test_interrupted_first_install_is_redone(broker, tmp_path):
    slots = tmp_path / "slots"
    slots.mkdir()
    (slots / "slot0").write_bytes(b"\x7fELF truncated")  # a copy killed half way
    os.chmod(slots / "slot0", 0o755)
    b = Board(broker, tmp_path, "--slots", str(slots))
    try:
        assert b.out("eval", "1") == "1\n"
        assert (slots / "slot0").read_bytes() == (BIN / "mqrepld").read_bytes()
    finally:
        b.stop()


# ---- the shipped configuration ----

def test_shipped_broker_config_and_acl(tmp_path):
    repo = BIN.parent if (BIN.parent / "dist").is_dir() else None
    dist = (repo or __import__("pathlib").Path(__file__).resolve().parents[2]) / "dist"
    key = "00112233445566778899aabbccddeeff"
    (tmp_path / "psk").write_text(f"board1:{key}\nadmin:{key}\n")
    conf = (dist / "mosquitto-psk.conf").read_text()
    from conftest import free_port
    local, tls = free_port(), free_port()
    conf = conf.replace("listener 1883 127.0.0.1", f"listener {local} 127.0.0.1")
    conf = conf.replace("listener 8883", f"listener {tls} 127.0.0.1")
    conf = conf.replace("/etc/mosquitto/mqboard.psk", str(tmp_path / "psk"))
    conf = conf.replace("/etc/mosquitto/", str(dist) + "/")
    # As root, mosquitto would drop to its own user, which cannot read the test's files.
    (tmp_path / "mosquitto.conf").write_text(conf + "\npersistence false\nuser root\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from conftest import wait_port
    wait_port(tls)
    (tmp_path / "root").mkdir()
    (tmp_path / "board.key").write_text(key + "\n")
    (tmp_path / "board.key").chmod(0o600)  # a key others may read is refused (below)
    agent = subprocess.Popen(
        [str(BIN / "mqrepld"), "-p", str(tls), "--prefix", "boards/board1", "--root",
         str(tmp_path / "root"), "--rtc-file", str(tmp_path / "rtc"), "--psk-identity", "board1",
         "--psk-file", str(tmp_path / "board.key"), "--wdt-timeout", "1.5", "--allok", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = [str(BIN / "mqboard"), "-p", str(tls), "--prefix", "boards/board1",
             "--psk-identity", "admin", "--psk-file", str(tmp_path / "board.key")]
    try:
        # Key files readable by others are refused by both programs, with the fix named.
        (tmp_path / "open.key").write_text(key + "\n")
        (tmp_path / "open.key").chmod(0o644)
        r = subprocess.run(admin[:-1] + [str(tmp_path / "open.key"), "eval", "1"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "chmod 600" in r.stderr and key not in r.stderr
        r = subprocess.run([str(BIN / "mqrepld"), "--prefix", "x/y", "--psk-identity", "a",
                            "--psk-file", str(tmp_path / "open.key")], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2 and "chmod 600" in r.stderr and key not in r.stderr
        end = time.monotonic() + 15
        while time.monotonic() < end:
            r = subprocess.run(admin + ["-T", "1", "eval", "1"], capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        assert r.returncode == 0, r.stderr
        time.sleep(4)  # more than twice the watchdog timeout: fed through the broker
        st = json.loads(subprocess.run(admin + ["--json", "status"], capture_output=True,
                                       text=True).stdout)["result"]
        assert st["mode"] == "normal" and st["reset_cause"] == "power-on"
        assert "psk" not in " ".join(open(f"/proc/{agent.pid}/cmdline").read().split("\0")[1:]
                                     ).replace("--psk-file", "").replace("--psk-identity", "")
        # Anonymous on loopback: may see the status, may not command the board.
        anon = [str(BIN / "mqboard"), "-p", str(local), "--prefix", "boards/board1", "-T", "1"]
        r = subprocess.run(anon + ["status"], capture_output=True, text=True)
        assert r.returncode == 0 and "online" in r.stdout
        r = subprocess.run(anon + ["eval", "open('/pwned','w')"], capture_output=True, text=True)
        assert r.returncode == 3  # mosquitto grants the subscription, delivers nothing
        assert not (tmp_path / "root/pwned").exists()
    finally:
        stop(agent)
        stop(proc)


def test_progress_bar_survives_more_bytes_than_announced(broker, tmp_path):
    """A file that grows while it is read (or a lying board): xget announces 10 bytes and
    sends 256 KiB, slowly enough that the progress bar draws (on a terminal, via script)."""
    import hashlib as _h
    data = os.urandom(256 * 1024)

    def answer(cmd, payload):
        if cmd == "caps":
            return [("out", HDR1 + b'{"proto":2,"chunk":65536,"window":16}')]
        if cmd == "xget":
            out = [("out", b"\x00\x0010")]
            for i in range(4):
                time.sleep(0.2)
                out.append(("out", bytes((0, i + 1)) + data[i * 65536:(i + 1) * 65536]))
            out.append(("out", b"\x80\x05" + _h.sha256(data).hexdigest().encode()))
            return out
        return [("err", b"no")]
    fake = FakeBoard(broker, "fake/grow", answer)
    try:
        dst = tmp_path / "got.bin"
        cmd = f"{BIN / 'mqboard'} -p {broker.port} --prefix fake/grow get /log.txt {dst}"
        r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout[-500:]
        assert dst.read_bytes() == data
    finally:
        fake.close()


def test_view_escapes_a_boards_log(board):
    p = subprocess.Popen(board.mqb_args("view", "-n", "1"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(0.5)
    board.mqb("exec", "log.warning('clear \\x1b[2J done')")
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0 and b"\x1b" not in out and b"\\x1b[2J" in out


def test_stdin_only_for_the_users_own_code(broker, tmp_path, board):
    """Issue 21: in `while read b; do mqboard --prefix "$b" put ...; done < boards.txt`, a
    board that asks for keyboard input during a put must not read the rest of boards.txt;
    with -n (as ssh -n) not even an eval reads it."""
    answers = []

    def answer(cmd, payload):
        if cmd == "caps":
            return [("out", HDR1 + b'{"proto":2,"chunk":4096,"window":4}')]
        if cmd == "ans":
            answers.append(payload)
            return []
        if cmd in ("xput", "put"):
            return [("ask", HDR1 + b'{"n":0,"op":"stdin","len":4096}')]
        return []
    fake = FakeBoard(broker, "fake/stdin", answer)
    local = tmp_path / "f.txt"
    local.write_text("x")
    try:
        r = subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "--prefix",
                            "fake/stdin", "-T", "1", "put", str(local), "/f.txt"],
                           input="next-board\npassword=hunter2\n", capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0
        deadline = time.monotonic() + 5
        while not answers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answers and all(b"hunter2" not in a and b"next-board" not in a
                               for a in answers)
    finally:
        fake.close()
    # -n: the user's own eval reads end of file too.
    r = board.mqb("-n", "exec", "try:\n print(input())\nexcept EOFError:\n print('eof')",
                  input=b"typed\n", text=False)
    assert r.stdout == b"eof\n"
    r = board.mqb("exec", "print(input())", input=b"typed\n")
    assert r.stdout == b"typed\n"


def test_fanout_json_documents_are_bounded(board, tmp_path):
    """A process per board (cat): each child's --json document is kept up to 1 MiB; a
    bigger one is dropped and said, so many boards cannot exhaust mqboard's memory."""
    (board.root / "big.txt").write_text("y" * (2 << 20))
    (board.root / "small.txt").write_text("fine")
    cfg = tmp_path / "cfg" / "mqboard"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text(f"[group g]\nmembers = {board.prefix}\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    for name, cut in (("big.txt", True), ("small.txt", False)):
        r = subprocess.run([str(BIN / "mqboard"), "-p", str(board.broker.port), "-b", "g",
                            "--json", "cat", "/" + name], capture_output=True, text=True,
                           env=env, timeout=60)
        doc = json.loads(r.stdout)["result"]["boards"][board.prefix]
        if cut:
            assert "over 1 MiB: dropped" in doc["error"]
        else:
            assert doc["output"] == "fine" and doc["exit_code"] == 0


def test_an_interrupt_at_the_first_bytecode_is_an_interrupt(board):
    """Interrupts sent right behind their evals land anywhere, the runner's own first
    bytecodes included: each eval ends with its result or KeyboardInterrupt, never with an
    internal error (4 in 300 did)."""
    done = {}
    lock = threading.Lock()
    c = mqtt.Client()

    def on_message(cl, u, m):
        if "/reply/busy/" not in m.topic:  # notices: the evals queue behind each other
            with lock:
                done.setdefault(m.topic.rsplit("/", 1)[1], []).append(bytes(m.payload))
    c.on_message = on_message
    c.connect("127.0.0.1", board.broker.port)
    c.subscribe(f"{board.prefix}/mqb/reply/#", 1)
    c.loop_start()
    try:
        time.sleep(0.3)  # the SUBACK (paho offers no simpler wait here)
        ids = [f"i{n:07d}" for n in range(300)]
        for i in ids:
            c.publish(f"{board.prefix}/mqb/cmd/eval/{i}", b"\x80\x00" + b"1+1", 1)
            c.publish(f"{board.prefix}/mqb/cmd/interrupt/x{i[1:]}/{i}", b"\x80\x00", 1)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            with lock:
                if all(i in done for i in ids):
                    break
            time.sleep(0.05)
        with lock:
            replies = {i: b"".join(done.get(i, [])) for i in ids}
        assert all(replies.values()), [i for i, r in replies.items() if not r][:5]
        bad = {i: r for i, r in replies.items() if b"internal error" in r}
        assert not bad, bad
        odd = {i: r for i, r in replies.items()
               if not (r.endswith(b"2") or b"KeyboardInterrupt" in r)}
        assert not odd, list(odd.items())[:3]
    finally:
        c.loop_stop()
        c.disconnect()


def _unit_text():
    return (Path(__file__).resolve().parents[2] / "dist" / "mqrepld.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_is_hardened(tmp_path):
    """dist/mqrepld.service passes systemd-analyze verify and rates OK (exposure at most
    2.0 of 10) in systemd-analyze security --offline."""
    unit = tmp_path / "mqrepld.service"
    unit.write_text(_unit_text().replace("/usr/local/bin/mqrepld", str(BIN / "mqrepld")))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m and float(m.group(1)) <= 2.0, r.stdout[-500:]


def _can_sandbox():
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None:
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_sandbox(), reason="needs root, unshare and setpriv")
def test_the_agent_and_an_ota_run_under_the_units_restrictions(broker, tmp_path):
    """What this machine can apply of the unit without systemd: a read-only system but the
    state directory, another user than root, no capabilities, no new privileges. The agent
    runs, takes a put and an eval, and an OTA boots the new image."""
    from test_recovery import newer_build, read_record
    unit = _unit_text()
    for line in ("ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                 "User=mqrepld", "StateDirectory=mqrepld"):
        assert line in unit, line
    # The test's own directories are root's alone (0700): the state lives where the agent's
    # user can reach it, as /var/lib/mqrepld is.
    state = Path(tempfile.mkdtemp(prefix="mqrepld-state-"))
    (state / "root").mkdir()
    subprocess.run(["chown", "-R", "65534:65534", str(state)], check=True)
    prefix = "sandbox/" + os.urandom(4).hex()
    script = (f"mount --bind {state} {state} && mount -o remount,bind,ro / && "
              f"exec setpriv --no-new-privs --reuid=65534 --regid=65534 --clear-groups "
              f"--inh-caps=-all --bounding-set=-all {BIN / 'mqrepld'} -p {broker.board_port} "
              f"--prefix {prefix} --root {state}/root --slots {state}/slots "
              f"--rtc-file {state}/rtc --wdt-timeout 2 --allok 3")
    log = open(tmp_path / "agent.log", "wb")
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         stdout=log, stderr=subprocess.STDOUT)
    mqb = [str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", prefix]
    try:
        end = time.monotonic() + 20
        while subprocess.run(mqb + ["-T", "1", "eval", "1"], capture_output=True).returncode:
            assert time.monotonic() < end and p.poll() is None, (tmp_path / "agent.log").read_text()
            time.sleep(0.1)
        out = subprocess.run(mqb + ["exec", "import os\ntry:\n open('/etc/x','w')\nexcept "
                                    "OSError as e: print('refused')\nprint(os.getuid())"],
                             capture_output=True, text=True).stdout
        assert "refused" in out
        f = tmp_path / "f.txt"
        f.write_text("hello")
        assert subprocess.run(mqb + ["put", str(f), "/f.txt"]).returncode == 0
        assert (state / "root" / "f.txt").read_text() == "hello"
        r = subprocess.run(mqb + ["ota", "--confirm", str(newer_build(tmp_path))],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "updated" in r.stdout, (r.stdout, r.stderr)
        assert read_record(state / "slots")[1] == 1
    finally:
        stop(p)
        log.close()
        shutil.rmtree(state, ignore_errors=True)
