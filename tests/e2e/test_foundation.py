"""The foundation end to end: eval, put and get through a real broker, and their failures."""

import os
import signal
import subprocess
import time

import pytest

from conftest import Board, board_files, free_port, BIN


def test_eval_expression(board):
    assert board.out("eval", "45+876") == "921\n"


def test_exec_statement_prints_output_only(board):
    assert board.out("eval", "import sys; print(sys.implementation.name)").strip() != ""
    assert board.out("eval", "print(1)") == "1\n"
    assert board.out("eval", "for i in range(3): print(i)") == "0\n1\n2\n"


def test_eval_output_then_result(board):
    assert board.out("eval", "print('a') or 5") == "a\n5\n"


def test_exception_goes_to_stderr(board):
    r = board.mqb("eval", "1/0", check=False, text=True)
    assert r.returncode == 1
    assert r.stdout == ""
    assert "ZeroDivisionError: division by zero" in r.stderr
    assert "Traceback" in r.stderr
    assert "_mqb_run" not in r.stderr


def test_syntax_error(board):
    r = board.mqb("eval", "def (:", check=False, text=True)
    assert r.returncode == 1
    assert "SyntaxError" in r.stderr


def test_names_persist(board):
    board.out("eval", "x = 41")
    assert board.out("eval", "x + 1") == "42\n"


def test_eval_from_stdin(board):
    r = board.mqb("eval", "-", input=b"y = 2\nprint(y * 21)\n")
    assert r.stdout == b"42\n"


def test_long_output_is_never_truncated(board):
    out = board.out("eval", "print('a' * 100000)")
    assert out == "a" * 100000 + "\n"
    out = board.out("eval", "for i in range(20000): print(i)")
    assert out.splitlines() == [str(i) for i in range(20000)]


def test_big_eval_input(board):
    # Source bigger than one message travels in several.
    src = "v = [" + ",".join(str(i) for i in range(30000)) + "]\nprint(sum(v))"
    assert len(src) > 65536
    r = board.mqb("eval", "-", input=src.encode())
    assert r.stdout == f"{sum(range(30000))}\n".encode()


@pytest.mark.parametrize("size", [0, 1, 1000, 1024 * 1024])
def test_put_get_roundtrip(board, tmp_path, size):
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    board.mqb("put", str(src), "/data/x.bin")
    assert (board.root / "data" / "x.bin").read_bytes() == data
    out = tmp_path / "out.bin"
    board.mqb("get", "/data/x.bin", str(out))
    assert out.read_bytes() == data
    assert board.mqb("get", "data/x.bin").stdout == data


def test_put_replaces_and_leaves_no_temp(board, tmp_path):
    src = tmp_path / "a.txt"
    for content in (b"first version\n", b"second\n"):
        src.write_bytes(content)
        board.mqb("put", str(src), "a.txt")
        assert (board.root / "a.txt").read_bytes() == content
    assert board_files(board.root) == ["a.txt"]


def test_nested_paths(board, tmp_path):
    src = tmp_path / "n.py"
    src.write_text("print('nested')\n")
    board.mqb("put", str(src), "lib/deep/er/n.py")
    assert (board.root / "lib/deep/er/n.py").read_text() == "print('nested')\n"
    board.mqb("put", str(src), "lib/deep/")
    assert (board.root / "lib/deep/n.py").exists()
    assert board.mqb("get", "/lib/deep/er/n.py").stdout == b"print('nested')\n"
    # The file is visible to code on the board, relative to the board root.
    assert board.out("eval", "open('lib/deep/er/n.py').read()") == "\"print('nested')\\n\"\n"


def test_get_into_directory(board, tmp_path):
    (board.root / "f.txt").write_bytes(b"hello")
    board.mqb("get", "f.txt", str(tmp_path))
    assert (tmp_path / "f.txt").read_bytes() == b"hello"


def test_get_missing_file(board, tmp_path):
    out = tmp_path / "keep.txt"
    out.write_bytes(b"precious")
    r = board.mqb("get", "nope.txt", str(out), check=False, text=True)
    assert r.returncode == 1
    assert "no such file or directory: nope.txt" in r.stderr
    assert out.read_bytes() == b"precious"  # a failed get does not touch the local file
    assert not (tmp_path / "keep.txt.mqb-part").exists()


def test_get_directory_is_an_error(board):
    (board.root / "d").mkdir()
    r = board.mqb("get", "d", check=False, text=True)
    assert r.returncode == 1
    assert "d is a directory on the board (get -r copies a tree)" in r.stderr  # as put's hint


@pytest.mark.parametrize("path", ["../outside.txt", "a/../../outside.txt", "../../etc/passwd"])
def test_paths_cannot_escape_root(board, tmp_path, path):
    src = tmp_path / "evil.txt"
    src.write_bytes(b"evil")
    r = board.mqb("put", str(src), path, check=False, text=True)
    assert r.returncode == 1
    assert "path escapes the board root" in r.stderr
    assert not (board.root.parent / "outside.txt").exists()
    r = board.mqb("get", path, check=False, text=True)
    assert r.returncode == 1
    assert "path escapes the board root" in r.stderr


def test_absolute_paths_are_board_paths(board):
    # "/etc/passwd" is the board's /etc/passwd, beneath the root, never the host's.
    r = board.mqb("get", "/etc/passwd", check=False, text=True)
    assert r.returncode == 1
    assert "no such file" in r.stderr


def test_symlinks_cannot_escape_root(board, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "s.txt").write_bytes(b"secret")
    os.symlink(outside, board.root / "link")
    os.symlink(outside / "s.txt", board.root / "file-link")
    for path in ("link/s.txt", "file-link"):
        r = board.mqb("get", path, check=False, text=True)
        assert r.returncode == 1, path
        assert "escapes the board root" in r.stderr
    src = tmp_path / "x.txt"
    src.write_bytes(b"x")
    r = board.mqb("put", str(src), "link/new/x.txt", check=False, text=True)
    assert r.returncode == 1
    assert not (outside / "new").exists()
    # Replacing a symlink that points outside replaces the link, not its target.
    board.mqb("put", str(src), "file-link")
    assert (outside / "s.txt").read_bytes() == b"secret"
    assert (board.root / "file-link").read_bytes() == b"x"


def test_put_missing_local_file(board, tmp_path):
    r = board.mqb("put", str(tmp_path / "none"), "x", check=False, text=True)
    assert r.returncode == 5
    assert "cannot read" in r.stderr


def pub(board, topic, payload):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(board.broker.port), "-q", "1",
                    "-t", topic, "-s"], input=payload, check=True)


def test_interrupted_put_keeps_old_file(board):
    (board.root / "app.py").write_bytes(b"old contents\n")
    topic = f"{board.prefix}/mqb/cmd/put/Kill0001/app.py"
    pub(board, topic, b"\x00\x00new ")
    pub(board, topic, b"\x00\x01contents")
    deadline = time.monotonic() + 5
    temps = []
    while not temps and time.monotonic() < deadline:
        temps = list((board.root / ".mqb-tmp").iterdir())
        time.sleep(0.02)
    assert temps, "the agent did not start writing the temporary file"
    time.sleep(0.2)
    board.stop(signal.SIGKILL)
    assert (board.root / "app.py").read_bytes() == b"old contents\n"
    board.start()
    assert (board.root / "app.py").read_bytes() == b"old contents\n"
    assert board_files(board.root) == ["app.py"]
    assert board_files(board.root / ".mqb-tmp") == []  # cleaned at start


def test_replaced_files_do_not_pile_up(board, tmp_path):
    """A put keeps the file it replaces under a second name until its reply has left (freeing
    a big file's blocks then never delays the OK); the agent removes it right after."""
    src = tmp_path / "src.bin"
    for i in range(3):
        src.write_bytes(bytes([i]) * 300000)
        board.mqb("put", str(src), "/big.bin")
        assert (board.root / "big.bin").read_bytes() == bytes([i]) * 300000
        board.mqb("eval", "1")  # a later turn of the agent's loop
        assert board_files(board.root / ".mqb-tmp") == []


def test_put_with_gap_keeps_old_file(board):
    (board.root / "app.py").write_bytes(b"old\n")
    topic = f"{board.prefix}/mqb/cmd/put/Gap00001/app.py"
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(board.broker.port), "-q", "1", "-C", "1",
         "-W", "10", "-t", f"{board.prefix}/mqb/reply/err/Gap00001"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    pub(board, topic, b"\x00\x00new")
    pub(board, topic, b"\x80\x02end")
    out, _ = sub.communicate(timeout=15)
    assert "sequence gap" in out
    assert (board.root / "app.py").read_bytes() == b"old\n"
    assert board_files(board.root) == ["app.py"]


def test_put_killed_tool_side_keeps_old_file(board, tmp_path):
    (board.root / "big.bin").write_bytes(b"old")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    p = subprocess.Popen(board.mqb_args("put", str(src), "big.bin"))
    time.sleep(0.15)
    board.stop(signal.SIGKILL)
    p.wait(timeout=60)
    assert (board.root / "big.bin").read_bytes() == b"old"
    board.start()
    assert board_files(board.root) == ["big.bin"]


def test_usage_errors(board):
    for args in (["eval"], ["put", "x"], ["get"], ["frobnicate"]):
        r = board.mqb(*args, check=False, text=True)
        assert r.returncode == 2, args
        assert "usage" in r.stderr or "unknown command" in r.stderr
    r = subprocess.run([str(BIN / "mqboard"), "eval", "1"], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"]})
    assert r.returncode == 2
    assert "--prefix" in r.stderr


def test_connection_refused():
    port = free_port()
    r = subprocess.run([str(BIN / "mqboard"), "-p", str(port), "--prefix", "x", "eval", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 4
    assert f"127.0.0.1:{port}" in r.stderr


def test_silent_board_times_out(broker):
    r = subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", "nobody/here",
                        "-T", "0.5", "eval", "1"], capture_output=True, text=True)
    assert r.returncode == 3
    assert "no board answers at 'nobody/here'" in r.stderr


def test_environment_variables(board):
    env = dict(os.environ, MQBOARD_PORT=str(board.broker.port), MQBOARD_PREFIX=board.prefix,
               MQBOARD_SERVER="127.0.0.1")
    r = subprocess.run([str(BIN / "mqboard"), "eval", "6*7"], capture_output=True, text=True,
                       env=env)
    assert r.stdout == "42\n"


def test_agent_stops_cleanly_on_sigterm(board):
    board.stop(signal.SIGTERM)
    assert board.proc.returncode == 0


def test_board_errors_read_as_mqboards_own(board):
    """Issue 20: `no such file or directory: /x` (the board's) and `mqboard: rm: /x: ...`
    (mqboard's) looked different; now every command's error names mqboard and the command,
    and only the user's own code shows its traceback as Python prints it."""
    for cmd in (["cat", "/nope"], ["get", "/nope"], ["rm", "/nope"], ["sha256sum", "/nope"]):
        r = board.mqb(*cmd, check=False, text=True)
        assert r.returncode == 1 and r.stderr.startswith(f"mqboard: {cmd[0]}: "), r.stderr
    r = board.mqb("exec", "1/0", check=False, text=True)
    assert r.stderr.startswith("Traceback (most recent call last):")
