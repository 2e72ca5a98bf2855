"""The board can always be recovered remotely: the watchdog, safe mode, resets, and OTA into
A/B slots with rollback, each as an end-to-end scenario with short timeouts."""

import os
import random
import shutil
import signal
import struct
import subprocess
import time
import zlib

import pytest

from conftest import BIN, Board, Broker

# Short timeouts so the scenarios run in seconds: watchdog 2 s, continuous feeding 3 s.
FAST = ("--wdt-timeout", "2", "--allok", "3")
SPIN = "# A loop in C that never releases the interpreter: it starves every other thread.\n" \
       "x = sum(range(10**15))\n"


def mode_is(board, mode, cause=None):
    st = board.status()
    return st is not None and st["status"] == "online" and st["mode"] == mode and \
        (cause is None or st["reset_cause"] == cause)


def test_spinning_app_lands_in_safe_mode_and_is_fixed(broker, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.py").write_text(SPIN)
    b = Board(broker, tmp_path, *FAST, wait=False)
    try:
        # The spin starves the feed; the watchdog resets the agent into safe mode, where
        # main.py does not run.
        b.wait_ready(timeout=30, check=lambda: mode_is(b, "safe", "watchdog"))
        assert not (root / "ran.txt").exists()
        fixed = tmp_path / "main.py"
        fixed.write_text("open('/ran.txt', 'w').write('app ran')\n")
        b.mqb("put", str(fixed), "/main.py")
        b.mqb("reset", "--normal")
        b.wait_ready(timeout=20, check=lambda: mode_is(b, "normal", "hard"))
        deadline = time.monotonic() + 10
        while not (root / "ran.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (root / "ran.txt").read_text() == "app ran"
    finally:
        b.stop()


def test_safe_mode_runs_safemode_main(broker, tmp_path):
    root = tmp_path / "root"
    (root / "safemode").mkdir(parents=True)
    (root / "safemode/main.py").write_text("open('/safe.txt', 'w').write('safe app')\n")
    (root / "main.py").write_text("open('/normal.txt', 'w').write('normal app')\n")
    (tmp_path / "rtc").write_bytes(b"\0\0\0\0")  # the previous boot never earned normal mode
    b = Board(broker, tmp_path, *FAST)
    try:
        b.wait_ready(check=lambda: (root / "safe.txt").exists())
        assert not (root / "normal.txt").exists()
        # The RTC memory survived: the agent was restarted, not powered on.
        assert b.out("eval", "machine.reset_cause()") == "2\n"
        assert b.status()["reset_cause"] == "restart"
    finally:
        b.stop()


def test_broker_outage_resets_to_safe_then_normal(tmp_path):
    broker = Broker(tmp_path)
    b = Board(broker, tmp_path, *FAST)
    try:
        b.wait_ready(check=lambda: mode_is(b, "normal"))
        old_boot = b.status()["boot_id"]
        broker.stop()
        time.sleep(5)  # longer than the watchdog timeout: the agent resets, maybe again
        broker.start()
        seen = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            # A clustered broker keeps the retained status across its restart: only a new
            # boot's status counts.
            st = b.status()
            if st and st["status"] == "online" and st["boot_id"] != old_boot:
                if not seen or seen[-1] != (st["mode"], st["reset_cause"]):
                    seen.append((st["mode"], st["reset_cause"]))
                if st["mode"] == "normal":
                    break
            time.sleep(0.2)
        # It came back in safe mode after a watchdog reset, and earned normal mode after allok.
        assert ("safe", "watchdog") in seen, seen
        assert seen[-1] == ("normal", "hard"), seen
    finally:
        b.stop()
        broker.close()


def test_reset_modes(board):
    board.mqb("reset", "--soft")
    board.wait_ready(check=lambda: board.out("eval", "machine.reset_cause()") == "5\n")
    board.mqb("reset", "--safe")
    board.wait_ready(check=lambda: mode_is(board, "safe"))
    board.mqb("reset", "--normal")
    board.wait_ready(check=lambda: mode_is(board, "normal", "hard"))
    board.mqb("reset", "--hard")
    board.wait_ready(check=lambda: board.out("eval", "machine.reset_cause()") == "2\n")


def test_app_health_check_stops_feeding(broker, tmp_path):
    b = Board(broker, tmp_path, *FAST)
    try:
        b.mqb("eval", "watchdog.require('app', 1)")
        # Nobody calls watchdog.ok('app'): the feed is refused and the watchdog resets.
        b.wait_ready(timeout=30, check=lambda: mode_is(b, "safe", "watchdog"))
    finally:
        b.stop()


# ---- OTA into A/B slots ----

def read_record(slots):
    """The boot-state record as the launcher chooses it: (seq, slot, state, prev)."""
    best = None
    for i in (0, 1):
        try:
            raw = (slots / f"otadata{i}").read_bytes()[:16]
        except FileNotFoundError:
            continue
        if len(raw) < 16 or raw[:4] != b"DBQM" or \
                struct.unpack("<I", raw[12:])[0] != zlib.crc32(raw[:12]):
            continue
        rec = struct.unpack("<I", raw[4:8])[0], raw[8], raw[9], raw[10]
        if best is None or rec[0] > best[0]:
            best = rec
    return best


VALID, NEW, PENDING, ABORTED = 0, 1, 2, 3


def newer_build(tmp_path):
    """A newer build of the agent: the same binary with its version string raised."""
    data = (BIN / "mqrepld").read_bytes()
    assert data.count(b"MQREPLD-VERSION=0.1.0\0") == 1
    image = tmp_path / "mqrepld-0.1.1"
    image.write_bytes(data.replace(b"MQREPLD-VERSION=0.1.0\0", b"MQREPLD-VERSION=0.1.1\0"))
    return image


def script_image(tmp_path, name, body):
    image = tmp_path / name
    image.write_text("#!/bin/sh\n" + body + "\n")
    return image


@pytest.fixture
def slotted(broker, tmp_path):
    b = Board(broker, tmp_path, *FAST, "--slots", str(tmp_path / "slots"))
    b.slots = tmp_path / "slots"
    yield b
    b.stop()


def version(board):
    return board.out("eval", "import uos; uos.uname().release").strip()


def test_ota_newer_build(slotted, tmp_path):
    b = slotted
    assert read_record(b.slots)[1:3] == (0, VALID)
    assert version(b) == "'0.1.0'"
    out = b.out("ota", str(newer_build(tmp_path)))
    assert "boots at the next reset" in out
    assert read_record(b.slots)[1:3] == (1, NEW)
    b.mqb("reset")
    b.wait_ready(check=lambda: version(b) == "'0.1.1'")
    # Marked valid once it stayed controllable for allok.
    deadline = time.monotonic() + 20
    while read_record(b.slots)[2] != VALID and time.monotonic() < deadline:
        time.sleep(0.2)
    assert read_record(b.slots)[1:3] == (1, VALID)
    b.mqb("reset", "--hard")
    b.wait_ready(check=lambda: version(b) == "'0.1.1'")


def test_relative_paths_are_resolved_at_start(broker, tmp_path):
    """mqrepld changes into its root: relative --root, --rtc-file and --slots still name what
    they named where it started (issue 20), so a clean stop writes the RTC memory (the next
    boot is normal) and ota finds the slots. A directory that cannot take the RTC memory is
    refused at start."""
    (tmp_path / "r").mkdir()
    (tmp_path / "root").mkdir()
    r = subprocess.run([str(BIN / "mqrepld"), "--prefix", "x/y", "--rtc-file", "nodir/rtc"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "nodir/rtc': cannot write in its directory" in r.stderr
    b = Board(broker, tmp_path, *FAST, "--root", "root", "--rtc-file", "r/rtc", "--slots",
              "slots", cwd=tmp_path)
    b.slots = tmp_path / "slots"
    try:
        assert b.out("exec", "open('/f.txt', 'w').write('x')") == ""
        assert (tmp_path / "root" / "f.txt").read_text() == "x"
        out = b.out("ota", str(newer_build(tmp_path)))
        assert "boots at the next reset" in out and read_record(b.slots)[1:3] == (1, NEW)
        b.mqb("reset")
        b.wait_ready(check=lambda: version(b) == "'0.1.1'")
        b.wait_ready(timeout=20, check=lambda: read_record(b.slots)[1:3] == (1, VALID))
        b.stop()
        assert (tmp_path / "r" / "rtc").exists()
        b.start()
        b.wait_ready(check=lambda: mode_is(b, "normal"))
    finally:
        b.stop()


def test_ota_to_a_board_without_slots_names_cause_and_fix(board, tmp_path):
    image = script_image(tmp_path, "img", "exit 0")
    r = board.mqb("ota", str(image), check=False, text=True)
    assert r.returncode == 1
    assert r.stderr.startswith("mqboard: ota: board ") and "--slots DIR" in r.stderr


@pytest.mark.parametrize("body", ["exit 3", "exec sleep 1000"])
def test_ota_bad_image_rolls_back(slotted, tmp_path, body):
    b = slotted
    b.out("ota", str(script_image(tmp_path, "bad", body)))
    assert read_record(b.slots)[1:3] == (1, NEW)
    b.mqb("reset")
    # The image never becomes controllable: the launcher rolls back to the old slot.
    b.wait_ready(timeout=40, check=lambda: version(b) == "'0.1.0'" and
                 read_record(b.slots)[1:3] == (0, ABORTED))


def test_ota_wrong_hash_and_interrupted_streams(slotted, tmp_path):
    b = slotted
    before = [(b.slots / f"otadata{i}").read_bytes() for i in (0, 1)]
    image = tmp_path / "img"
    image.write_bytes(os.urandom(64 * 1024 * 1024))  # takes seconds: killed well before the end
    for _ in range(3):
        p = subprocess.Popen(b.mqb_args("-q", "ota", str(image)), stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(0.02, 0.25))
        p.kill()
        p.wait()
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.broker.port), "-C", "1", "-W", "10",
         "-t", f"{b.prefix}/mqb/reply/err/Wrong001"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    topic = f"{b.prefix}/mqb/cmd/ota/Wrong001/" + "ab" * 32
    for payload in (b"\x00\x00" + b"x" * 4096, b"\x80\x01" + b"y" * 100):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.broker.port), "-q", "1",
                        "-t", topic, "-s"], input=payload, check=True)
    out, _ = sub.communicate(timeout=15)
    assert out.startswith("hash mismatch")
    assert [(b.slots / f"otadata{i}").read_bytes() for i in (0, 1)] == before
    b.mqb("reset", "--hard")
    b.wait_ready(check=lambda: version(b) == "'0.1.0'")
    assert read_record(b.slots)[1:3] == (0, VALID)


@pytest.mark.parametrize("damage", ["zero0", "zero1", "truncate0", "truncate1"])
def test_damaged_record_still_boots_last_choice(slotted, tmp_path, damage):
    b = slotted
    b.out("ota", str(newer_build(tmp_path)))
    b.mqb("reset")
    b.wait_ready(check=lambda: version(b) == "'0.1.1'" and read_record(b.slots)[2] == VALID)
    b.stop()
    copy = b.slots / f"otadata{damage[-1]}"
    if damage.startswith("zero"):
        copy.write_bytes(b"\0" * 16)
    else:
        copy.write_bytes(copy.read_bytes()[:7])
    b.start(wait=False)
    b.wait_ready(check=lambda: version(b) == "'0.1.1'")


def test_hw_watchdog_is_petted_while_fed(broker, tmp_path):
    wd = tmp_path / "watchdog"  # a file stands in for /dev/watchdog
    wd.write_bytes(b"")
    b = Board(broker, tmp_path, "--wdt-timeout", "1", "--allok", "100", "--hw-watchdog", str(wd))
    try:
        deadline = time.monotonic() + 10
        while wd.stat().st_size < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert wd.stat().st_size >= 2  # one byte per accepted feed
    finally:
        b.stop()
    data = wd.read_bytes()
    assert data.endswith(b"V") and set(data[:-1]) == {1}  # the magic close on a clean stop


def test_ota_confirmed_when_the_rule_is_met_not_at_the_next_feed(broker, tmp_path):
    """With the default watchdog timeout (300 s: feeds every 75 s) and --allok 3, a new image
    is confirmed about 3 s after it boots (issue 20: it waited for the second feed, 78 s).
    The first feed goes when the link is up, and starts the run."""
    b = Board(broker, tmp_path, "--allok", "3", "--slots", str(tmp_path / "slots"))
    try:
        r = b.mqb("ota", "--confirm", "--wait", "30", str(newer_build(tmp_path)), text=True,
                  timeout=90)
        assert "updated" in r.stdout and "valid" in r.stdout, r.stdout
        assert "image: valid" in b.out("status")
    finally:
        b.stop()
