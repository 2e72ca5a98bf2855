"""Fleet rules end to end: commands that cannot run late (a deadline in the id, retained
commands ignored), and rollouts in waves (a canary that rolls back stops the rest)."""

import json
import os
import subprocess
import time

import pytest

from conftest import BIN, BROKER, REPO, Board, Broker
from test_recovery import FAST, VALID, newer_build, read_record, script_image



def pub(board, topic, payload, *extra):
    """payload None: an empty message (with -r: clears the retained one)."""
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(board.broker.port), "-q", "1",
                    "-t", f"{board.prefix}/mqb/{topic}", "-n" if payload is None else "-s",
                    *extra], input=payload, check=True)


def reply(board, id_, timeout=5):
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(board.broker.port),
                        "-t", f"{board.prefix}/mqb/reply/+/{id_}", "-C", "1", "-W", str(timeout),
                        "-v"], capture_output=True, timeout=timeout + 5)
    return r.stdout


def test_an_expired_command_is_refused_not_run(board):
    import threading
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", reply(board, "Expired1.00000010")))
    t.start()
    time.sleep(0.3)
    pub(board, "cmd/eval/Expired1.00000010", b"\x80\x00open('/ran', 'w').write('x')")
    t.join()
    assert b"reply/err/Expired1.00000010 command expired" in got["r"]
    assert not (board.root / "ran").exists()
    # A deadline still ahead runs; so does an id without one (the original tool's).
    future = "%08x" % (int(time.time()) + 600)
    pub(board, f"cmd/eval/Future01.{future}", b"\x80\x00open('/ran', 'w').write('x')")
    pub(board, "cmd/eval/Original", b"\x80\x00open('/ran2', 'w').write('x')")
    end = time.monotonic() + 10
    while not ((board.root / "ran").exists() and (board.root / "ran2").exists()):
        assert time.monotonic() < end
        time.sleep(0.05)


def test_the_tool_sets_the_deadline_and_expire_0_sends_none(board):
    r = board.mqb("-vv", "eval", "1", text=True)
    assert r.stdout == "1\n"
    sent = [l for l in r.stderr.splitlines() if "/cmd/eval/" in l]
    deadline = int(sent[0].split("/cmd/eval/")[1].split()[0].split(".")[1], 16)
    assert abs(deadline - (time.time() + 600)) < 30
    r = board.mqb("-vv", "--expire", "0", "eval", "1", text=True)
    sent = [l for l in r.stderr.splitlines() if "/cmd/eval/" in l]
    assert "." not in sent[0].split("/cmd/eval/")[1].split()[0]
    assert board.mqb("--expire", "x", "eval", "1", check=False).returncode == 2


def test_a_retained_command_never_runs_at_boot(board):
    board.stop()
    # Published while the board is away, retained: the broker hands it to every new subscriber.
    pub(board, "cmd/eval/Retain01", b"\x80\x00open('/ran', 'w').write('x')", "-r")
    try:
        board.start()
        board.mqb("eval", "1")
        time.sleep(0.5)
        assert not (board.root / "ran").exists()
        assert "ignored a retained command" in (board.tmp / "mqrepld.log").read_text()
    finally:
        pub(board, "cmd/eval/Retain01", None, "-r")  # clear it (-n: empty message)


# ---- rollouts ----

@pytest.fixture
def fleet(tmp_path):
    """Three boards with A/B slots and a fast watchdog on a broker of their own, and a config
    file with them as the group `fleet`."""
    broker = Broker(tmp_path)
    boards = []
    try:
        for name in ("a", "b", "c"):
            (tmp_path / name).mkdir()
            b = Board(broker, tmp_path / name, *FAST, "--slots", str(tmp_path / name / "slots"))
            b.slots = tmp_path / name / "slots"
            boards.append(b)
        cfg = tmp_path / "cfg/mqboard"
        cfg.mkdir(parents=True)
        (cfg / "config").write_text(f"port = {broker.port}\n[group fleet]\nmembers = " +
                                    " ".join(b.prefix for b in boards) + "\n")
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
        yield boards, env
    finally:  # also when a board did not come up: nothing is left running
        for b in boards:
            b.stop()
        broker.close()


def rollout(env, *args):
    return subprocess.run([str(BIN / "mqboard"), "-b", "fleet", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_a_canary_that_rolls_back_stops_the_rollout(fleet, tmp_path):
    boards, env = fleet
    bad = script_image(tmp_path, "bad", "exit 3")
    r = rollout(env, "--canary", "1", "--max-failures", "0", "--json", "ota", "--wait", "60",
                str(bad))
    doc = json.loads(r.stdout)["result"]
    assert r.returncode == 1, r.stderr
    canary = boards[0].prefix
    assert doc["boards"][canary]["result"]["outcome"] == "rolled back"
    before, after = (doc["boards"][canary]["result"][k] for k in ("before", "after"))
    assert before["slot"] == after["slot"] == 0 and before["boot_id"] != after["boot_id"]
    assert doc["not_started"] == [b.prefix for b in boards[1:]]
    assert "rollout stopped" in r.stdout  # the --json document's error
    for b in boards[1:]:  # untouched: no image was even sent
        assert read_record(b.slots)[1:3] == (0, VALID)


def test_a_good_image_rolls_out_in_waves_and_is_confirmed(fleet, tmp_path):
    boards, env = fleet
    r = rollout(env, "--canary", "1", "--parallel", "2", "ota", str(newer_build(tmp_path)))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "rollout: canary wave of 1 board" in r.stdout and "rollout: wave of 2 boards" in r.stdout
    assert r.stdout.count("updated: slot 0 -> 1, image valid") == 3
    for b in boards:
        assert read_record(b.slots)[1:3] == (1, VALID)
        assert b.status()["image"] == "valid" and b.status()["slot"] == 1


def test_ota_confirm_wrong_arguments(fleet, tmp_path):
    boards, env = fleet
    b = boards[0]
    assert b.mqb("ota", "--wait", "x", "img", check=False).returncode == 2
    assert b.mqb("ota", "--confirm", check=False).returncode == 2
    assert b.mqb("--canary", "0", "ota", "img", check=False).returncode == 2
    (tmp_path / "plain").mkdir()
    plain = Board(b.broker, tmp_path / "plain")  # no slots: nothing to confirm
    try:
        r = plain.mqb("ota", "--confirm", str(newer_build(tmp_path)), check=False, text=True)
        assert r.returncode == 1 and "needs a board whose status shows its slot" in r.stderr
    finally:
        plain.stop()


def test_readme_many_boards_block(fleet, tmp_path):
    """The README's "Many boards" examples, run as written against this fleet (site/ is the
    fleet's prefix base; [group fleet] is its three boards)."""
    boards, env = fleet
    text = (REPO / "README.md").read_text()
    block = text.split("### Many boards", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [l for l in block.splitlines() if l.startswith("mqboard ")]
    assert len(lines) >= 5
    (tmp_path / "firmware.bin").write_bytes(newer_build(tmp_path).read_bytes())
    port = str(boards[0].broker.port)
    env = dict(env, MQBOARD_PORT=port, PATH=f"{BIN}:{os.environ['PATH']}")
    for line in lines:
        line = line.replace("site/", boards[0].prefix.split("/")[0] + "/")
        r = subprocess.run(["bash", "-ec", line], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (line, r.stdout, r.stderr)
        if "exec 'print(42)'" in line:
            assert all(f"{b.prefix}: 42" in r.stdout for b in boards)
            assert "3 ok, 0 failed, 0 offline" in r.stdout
        if line.startswith("mqboard boards"):
            assert all(b.prefix in r.stdout for b in boards)
    assert all(read_record(b.slots)[1:3] == (1, VALID) for b in boards)


# ---- many boards: one connection for eval, a report per board ----

def test_ten_boards_one_offline_one_failing(tmp_path):
    broker = Broker(tmp_path)
    boards = []
    try:
        for i in range(10):
            (tmp_path / f"b{i}").mkdir()
            boards.append(Board(broker, tmp_path / f"b{i}"))
        for b in boards[:9]:
            (b.root / "x.txt").write_text("x")
        (boards[8].root / "x.txt").unlink()  # this one fails
        boards[9].stop()  # this one is offline (a clean stop publishes it)
        cfg = tmp_path / "cfg/mqboard"
        cfg.mkdir(parents=True)
        (cfg / "config").write_text(f"port = {broker.port}\n[group ten]\nmembers = " +
                                    " ".join(b.prefix for b in boards) + "\n")
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
        mqb = [str(BIN / "mqboard"), "-b", "ten"]
        log = broker.dir / "broker.log"
        before = log.read_text().count("New client connected") if BROKER == "mosquitto" else 0
        r = subprocess.run(mqb + ["eval", "open('/x.txt').read()"], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 1
        for b in boards[:8]:
            assert f"{b.prefix}: 'x'" in r.stdout
        assert f"{boards[8].prefix}: " in r.stderr and "No such file" in r.stderr
        assert f"{boards[9].prefix}: mqboard: the board is offline" in r.stderr
        assert "8 ok, 1 failed, 1 offline or silent (of 10 boards)" in r.stdout
        if BROKER == "mosquitto":  # all ten boards over one connection
            assert log.read_text().count("New client connected") == before + 1
        r = subprocess.run(mqb + ["--json", "eval", "1+1"], capture_output=True, text=True,
                           env=env, timeout=60)
        doc = json.loads(r.stdout)["result"]
        assert (doc["ok"], doc["failed"], doc["offline"]) == (9, 0, 1)
        assert doc["boards"][boards[0].prefix]["output"] == "2\n"
        # put and reset: a process per board, the same report.
        blob = tmp_path / "blob.bin"
        blob.write_bytes(os.urandom(100_000))
        r = subprocess.run(mqb + ["-q", "put", str(blob), "/blob.bin"], capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 1 and "9 ok, 0 failed, 1 offline" in r.stdout
        assert all((b.root / "blob.bin").read_bytes() == blob.read_bytes() for b in boards[:9])
        r = subprocess.run(mqb + ["reset"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1 and "9 ok, 0 failed, 1 offline" in r.stdout
        r = subprocess.run(mqb + ["eval", "machine.reset_cause()"], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.stdout.count(": 2\n") == 9  # every board that was there was reset (hard)
    finally:
        for b in boards:
            b.stop()
        broker.close()


def test_mqtt5_message_expiry_drops_a_command_queued_for_an_absent_board(broker, tmp_path):
    """A board with a persistent session (not ours: ours use clean ones) that is away: the
    broker queues its commands; with MQTT 5 they carry --expire as their message expiry, so
    the broker drops them instead of delivering them hours later."""
    if BROKER != "mosquitto":
        pytest.skip("message expiry is MQTT 5 (the aedes cluster speaks 3.1.1: the id's "
                    "deadline covers it, test_an_expired_command_is_refused_not_run)")
    prefix = "expiry/" + os.urandom(4).hex()

    def queued(cid):
        r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-c",
                            "-i", cid, "-q", "1", "-t", f"{prefix}/mqb/cmd/#", "-W", "1", "-v"],
                           capture_output=True, timeout=10)
        return r.stdout

    for expire, kept in (("1", False), ("0", True)):
        cid = f"absent-{expire}-{os.getpid()}"
        queued(cid)  # the session exists, then the board goes away
        subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", prefix,
                        "--expire", expire, "eval", "1"], capture_output=True, timeout=30)
        time.sleep(2.2)
        got = queued(cid)
        assert (b"/mqb/cmd/caps/" in got) == kept, (expire, got)


def test_fan_out_lines_are_whole_and_escaped(tmp_path):
    """Issue 21: the per-board fan-out (cat, chains, rollouts) cut long lines every 64 KiB
    and dropped a byte at each cut, and passed a board's \\r and ESC through raw (one board's
    line could look like another's). Now every byte arrives, and escapes are shown."""
    broker = Broker(tmp_path)  # its own: the pattern reaches every board on it
    boards = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        boards.append(Board(broker, tmp_path / name))
    try:
        line = "".join(chr(ord("a") + i % 26) for i in range(150000))
        for b in boards:
            (b.root / "long.txt").write_text(line + "\nforged\rother: ok\x1b[2K\n")
        r = subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", "test/+",
                            "cat", "/long.txt"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        for b in boards:
            mine = [ln[len(b.prefix) + 2:] for ln in r.stdout.splitlines()
                    if ln.startswith(b.prefix + ": ")]
            assert "".join(mine[:-1]) == line  # cut in pieces, none lost
            assert mine[-1] == "forged\\x0dother: ok\\x1b[2K"
        assert "\x1b" not in r.stdout and "\r" not in r.stdout
    finally:
        for b in boards:
            b.stop()
        broker.close()
