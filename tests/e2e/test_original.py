"""Our tool against a board that answers exactly as the original mqrepl.py does (mqrepld
--original: no caps, xput, xget, interrupt, status; expressions reply their repr only): the
tool's fallback paths for put, get, ls, mkdir, rm, sync, sha256sum, ota and reset."""

import hashlib
import os
import time

import pytest

from conftest import Board, board_files


@pytest.fixture
def orig(broker, tmp_path):
    b = Board(broker, tmp_path, "--original", "--wdt-timeout", "0")
    yield b
    b.stop()


def test_it_answers_as_the_original(orig):
    assert orig.out("eval", "1+1") == "2\n"
    assert orig.out("eval", "print(5)") == "None\n"  # an expression: its repr, not its output
    assert orig.out("exec", "print(5)") == "5\n"
    r = orig.mqb("status", check=False, text=True)
    assert r.returncode == 1 and "never published a status" in r.stderr


@pytest.mark.parametrize("size", [0, 1, 1400, 2800, 1024 * 1024 + 7])
def test_put_get_fall_back_and_verify(orig, tmp_path, size):
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    orig.mqb("put", str(src), "/f.bin")
    assert (orig.root / "f.bin").read_bytes() == data
    orig.mqb("get", "/f.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    want = hashlib.sha256(data).hexdigest()
    assert orig.out("sha256sum", "/f.bin") == f"{want}  /f.bin\n"


def test_fs_commands_and_sync(orig, tmp_path):
    orig.mqb("mkdir", "-p", "/a/b/c")
    assert (orig.root / "a/b/c").is_dir()
    assert orig.out("ls", "/a") == "b/\n"
    src = tmp_path / "app"
    (src / "lib").mkdir(parents=True)
    (src / "main.py").write_text("v1")
    (src / "lib/u.py").write_text("u")
    assert "2 put" in orig.out("sync", str(src), "/app")
    assert "2 unchanged" in orig.out("sync", str(src), "/app")
    (orig.root / "app/extra.py").write_text("x")
    assert "1 removed" in orig.out("sync", "--delete", str(src), "/app")
    orig.mqb("rm", "-r", "/a")
    assert board_files(orig.root) == ["app"]
    back = tmp_path / "back"
    orig.mqb("get", "-r", "/app", str(back))
    assert (back / "app/lib/u.py").read_text() == "u"


def test_reset_falls_back_to_the_original_program(orig):
    orig.mqb("reset", "--soft")
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if orig.mqb("-T", "1", "eval", "1", check=False).returncode == 0:
            break
        time.sleep(0.2)
    assert orig.out("eval", "machine.reset_cause()") == "5\n"


def test_ota_falls_back(broker, tmp_path):
    from test_recovery import read_record, NEW
    b = Board(broker, tmp_path, "--original", "--wdt-timeout", "2", "--allok", "3",
              "--slots", str(tmp_path / "slots"))
    try:
        image = tmp_path / "image"
        image.write_bytes(os.urandom(300 * 1024))
        assert "boots at the next reset" in b.out("ota", str(image))
        assert read_record(tmp_path / "slots")[1:3] == (1, NEW)
        assert (tmp_path / "slots/slot1").read_bytes() == image.read_bytes()
    finally:
        b.stop()
