"""Fault injection: the agent killed at random moments of a put and of an OTA (commit
included), the launcher killed during its first install, the broker gone mid-transfer, a full
disk. After each, the old file and the boot choice are intact and nothing partial remains.
The moments are random but the seed is printed, so a failure can be replayed."""

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, Board, Broker, board_files
from test_recovery import read_record, NEW, VALID

SEED = int(os.environ.get("MQB_FAULT_SEED", random.randrange(1 << 30)))
print(f"fault-injection seed: MQB_FAULT_SEED={SEED}")


def children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def test_agent_killed_during_puts(board, tmp_path):
    rnd = random.Random(SEED)
    old, new = os.urandom(3 * 1024 * 1024), os.urandom(3 * 1024 * 1024)
    (board.root / "data.bin").write_bytes(old)
    src = tmp_path / "new.bin"
    src.write_bytes(new)
    for _ in range(6):
        p = subprocess.Popen(board.mqb_args("-q", "--chunk", "4096", "put", str(src),
                                            "/data.bin"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.0, 0.6))
        board.stop(signal.SIGKILL)
        p.wait(timeout=60)
        got = (board.root / "data.bin").read_bytes()
        assert got in (old, new), "a put left a partial file"
        board.start()
        assert board_files(board.root / ".mqb-tmp") == []
        assert board_files(board.root) == ["data.bin"]
        (board.root / "data.bin").write_bytes(old)


def test_agent_killed_during_ota(broker, tmp_path):
    rnd = random.Random(SEED + 1)
    slots = tmp_path / "slots"
    b = Board(broker, tmp_path, "--wdt-timeout", "0", "--slots", str(slots))
    image = tmp_path / "image"
    image.write_bytes(os.urandom(6 * 1024 * 1024))
    try:
        for _ in range(5):
            assert read_record(slots)[1:3] == (0, VALID)
            p = subprocess.Popen(b.mqb_args("-q", "--chunk", "8192", "ota", str(image)),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.05, 1.0))
            for c in children(b.proc.pid):  # the agent; the launcher restarts it
                os.kill(c, signal.SIGKILL)
            p.wait(timeout=60)
            rec = read_record(slots)
            assert rec is not None, "the boot-state record was damaged"
            if rec[1:3] == (1, NEW):  # the kill came after the commit: a whole image
                assert (slots / "slot1").read_bytes() == image.read_bytes()
                # Undo, for the next round (the launcher would boot it once).
                b.stop()
                for i in (0, 1):
                    (slots / f"otadata{i}").unlink()
                b.start(wait=False)
            else:
                assert rec[1:3] == (0, VALID)
            b.wait_ready(timeout=30)
            assert not (slots / "slot1.new").exists(), "a partial image stayed"
    finally:
        b.stop()


def test_launcher_killed_during_first_install(broker, tmp_path):
    rnd = random.Random(SEED + 2)
    slots = tmp_path / "slots"
    for _ in range(6):
        b = Board(broker, tmp_path, "--slots", str(slots), wait=False)
        time.sleep(rnd.uniform(0.0, 0.05))
        b.stop(signal.SIGKILL)
        if (slots / "slot0").exists():
            assert (slots / "slot0").read_bytes() == (BIN / "mqrepld").read_bytes()
    b = Board(broker, tmp_path, "--slots", str(slots))
    try:
        assert b.out("eval", "1") == "1\n"
        assert (slots / "slot0").read_bytes() == (BIN / "mqrepld").read_bytes()
        assert read_record(slots)[1:3] == (0, VALID)
    finally:
        b.stop()


def test_broker_gone_mid_transfer(tmp_path):
    broker = Broker(tmp_path)
    b = Board(broker, tmp_path)
    try:
        old, new = b"old contents", os.urandom(8 * 1024 * 1024)
        (b.root / "f.bin").write_bytes(old)
        src = tmp_path / "new.bin"
        src.write_bytes(new)
        p = subprocess.Popen(b.mqb_args("-q", "--chunk", "4096", "put", str(src), "/f.bin"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        broker.stop()
        _, err = p.communicate(timeout=60)
        assert p.returncode in (3, 4), err
        assert (b.root / "f.bin").read_bytes() == old
        broker.start()
        b.wait_ready(timeout=30)
        b.mqb("put", str(src), "/f.bin")
        assert (b.root / "f.bin").read_bytes() == new
    finally:
        b.stop()
        broker.close()


def test_full_disk(broker, tmp_path):
    root = tmp_path / "small"
    root.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: " + r.stderr.decode().strip())
    try:
        (root / "root").mkdir()
        (root / "root/keep.bin").write_bytes(b"k" * 1000)
        b = Board(broker, root)
        try:
            src = tmp_path / "big.bin"
            src.write_bytes(os.urandom(2 * 1024 * 1024))
            r = b.mqb("put", str(src), "/keep.bin", check=False, text=True)
            assert r.returncode == 1 and "no space left" in r.stderr
            assert (root / "root/keep.bin").read_bytes() == b"k" * 1000
            assert board_files(root / "root/.mqb-tmp") == []
            assert b.out("eval", "1") == "1\n"
        finally:
            b.stop()
    finally:
        subprocess.run(["umount", str(root)])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_put_abandoned_by_the_tool_is_cleaned_at_once(board, tmp_path, sig):
    (board.root / "f.bin").write_bytes(b"old")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(16 * 1024 * 1024))
    p = subprocess.Popen(board.mqb_args("-q", "--chunk", "4096", "put", str(src), "/f.bin"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end and board_files(board.root / ".mqb-tmp") == []:
        time.sleep(0.01)
    os.kill(p.pid, sig)
    assert p.wait(timeout=20) in (130, 128 + sig)
    # The abort message queues behind the data still in flight (through a cluster's bus, or
    # a loaded machine's broker, that takes a while): it has come when the temporary file
    # is gone, well before the minute after which an idle stream would be abandoned anyway.
    end = time.monotonic() + 30
    while time.monotonic() < end and board_files(board.root / ".mqb-tmp") != []:
        time.sleep(0.05)
    assert board_files(board.root / ".mqb-tmp") == []
    assert (board.root / "f.bin").read_bytes() == b"old"
