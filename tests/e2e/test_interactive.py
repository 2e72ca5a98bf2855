"""Interactive use end to end: keyboard input reaching a program on the board (input(),
sys.stdin) from `eval`/`run`/`repl`, the repl on a real pseudo-terminal (history across
sessions, Ctrl-C at the prompt), and `mqboard mount` (imports, reads, writes, escapes refused,
the mount's lifetime)."""

import os
import pty
import select
import signal
import subprocess
import termios
import time

import pytest

from conftest import Board, stop


class Pty:
    """mqboard on a pseudo-terminal, as a user at a keyboard runs it."""

    def __init__(self, args, home):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["HOME"] = str(home)
            os.execv(args[0], args)
        self.seen = b""

    def expect(self, what, timeout=15):
        end = time.monotonic() + timeout
        while what not in self.seen and time.monotonic() < end:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.fd, 4096)
                except OSError:
                    break
        assert what in self.seen, (what, self.seen[-400:])
        if what in (b">>> ", b"... "):
            self.wait_editing(end)

    def wait_editing(self, end):
        """Waits until libedit reads keys: it writes its prompt while the terminal is still
        in line mode, where a Ctrl-C or Ctrl-D typed at once is taken by the terminal driver,
        as a person typing ahead would see too. The event: the terminal leaves line mode."""
        while termios.tcgetattr(self.fd)[3] & termios.ICANON and time.monotonic() < end:
            time.sleep(0.01)
        assert not termios.tcgetattr(self.fd)[3] & termios.ICANON, "libedit is not reading"

    def send(self, data):
        self.seen = b""
        os.write(self.fd, data)

    def wait(self, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.pid = None
                return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
            time.sleep(0.05)
        raise AssertionError("mqboard did not leave")

    def close(self):
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


# ---- keyboard input ----

def test_input_is_answered_from_piped_stdin(board, tmp_path):
    script = tmp_path / "ask.py"
    script.write_text("a = input('first? ')\nb = input('second? ')\nprint('got', a, b)\n")
    r = board.mqb("run", str(script), input="one\ntwo\n", text=True)
    assert r.stdout == "first? second? got one two\n"
    r = board.mqb("exec", "import sys\nprint(sys.stdin.read().upper())", input="abc\ndef\n",
                  text=True)
    assert r.stdout == "ABC\nDEF\n\n"


def test_end_of_input_is_eoferror_and_unused_stdin_stays_unread(board):
    r = board.mqb("exec", "input('x? ')", input="", text=True, check=False)
    assert r.returncode == 1 and "EOFError" in r.stderr
    # A program that reads nothing leaves our standard input alone (a `while read` loop
    # around mqboard keeps its lines), unlike ssh without -n.
    cmd = " ".join(f"'{a}'" for a in board.mqb_args("eval", "1 + 1"))
    r = subprocess.run(["sh", "-c", f"{cmd}; cat"], input="kept\n", capture_output=True,
                       text=True, timeout=60)
    assert r.stdout == "2\nkept\n"


def test_detached_and_original_evals_read_end_of_file(board, tmp_path):
    # --no-follow: nobody follows the eval, so nobody can type for it.
    board.mqb("--no-follow", "exec", "import sys\nr = repr(sys.stdin.read())\nopen('/r.txt','w').write(r)")
    end = time.monotonic() + 10
    while not (board.root / "r.txt").exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert (board.root / "r.txt").read_text() == "''"


def test_input_on_a_terminal_in_run_and_repl(board, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("name = input('name? ')\nprint('hello ' + name)\n")
    t = Pty(board.mqb_args("run", str(script)), tmp_path)
    try:
        t.expect(b"name? ")
        t.send(b"Ada\r")
        t.expect(b"hello Ada")
        assert t.wait() == 0
    finally:
        t.close()
    t = Pty(board.mqb_args("repl"), tmp_path)
    try:
        t.expect(b">>> ")
        t.send(b"n = int(input('n? ')) * 2\r")
        t.expect(b"n? ")
        t.send(b"21\r")
        t.expect(b">>> ")
        t.send(b"n\r")
        t.expect(b"42")
        t.expect(b">>> ")  # the prompt is back: libedit reads the Ctrl-D
        t.send(b"\x04")
        assert t.wait() == 0
    finally:
        t.close()


def test_ctrl_c_while_the_board_waits_for_input(board, tmp_path):
    t = Pty(board.mqb_args("exec", "input('wait? ')"), tmp_path)
    try:
        t.expect(b"wait? ")
        os.write(t.fd, b"\x03")
        t.expect(b"KeyboardInterrupt")
        assert t.wait() == 130
    finally:
        t.close()
    assert board.out("eval", "7") == "7\n"  # and the board is free


# ---- the repl on a terminal: history, Ctrl-C at the prompt ----

def test_repl_history_across_sessions_and_ctrl_c_at_the_prompt(board, tmp_path):
    t = Pty(board.mqb_args("repl"), tmp_path)
    try:
        t.expect(b">>> ")
        t.send(b"'remember ' + 'me'\r")
        t.expect(b"'remember me'")
        t.expect(b">>> ")
        t.send(b"this line is dropped")
        t.expect(b"dropped")  # echoed: typed, as a person types, before the Ctrl-C
        t.send(b"\x03")  # Ctrl-C at the prompt drops the line, the session goes on
        t.expect(b"KeyboardInterrupt")
        assert b"\nKeyboardInterrupt" in t.seen  # on a line of its own (issue 20)
        t.expect(b">>> ")
        t.send(b"6 * 7\r")
        t.expect(b"42")
        t.expect(b">>> ")  # the prompt is back: libedit reads the Ctrl-D
        t.send(b"\x04")
        assert t.wait() == 0
    finally:
        t.close()
    history = (tmp_path / ".mqboard_history").read_text()  # libedit's format: \040 a space
    assert "'remember\\040'" in history and "dropped" not in history
    t = Pty(board.mqb_args("repl"), tmp_path)
    try:
        t.expect(b">>> ")
        t.send(b"\x1b[A\x1b[A\r")  # Up twice: the first session's line, run again
        t.expect(b"'remember me'")
        t.expect(b">>> ")  # the prompt is back: libedit reads the Ctrl-D
        t.send(b"\x04")
        assert t.wait() == 0
    finally:
        t.close()


def test_repl_continuation_tab_of_a_new_name_and_ctrl_c_in_a_busy_loop(board, tmp_path):
    t = Pty(board.mqb_args("repl"), tmp_path)
    try:
        t.expect(b">>> ")
        t.send(b"def twice(x):\r")
        t.expect(b"... ")  # a block continues
        t.send(b"    return 2 * x\r")
        t.expect(b"... ")
        t.send(b"\r")  # an empty line closes it
        t.expect(b">>> ")
        t.send(b"my_total = twice(21)\r")
        t.expect(b">>> ")
        t.send(b"my_to\t")  # TAB completes the name defined on the board a moment ago
        t.expect(b"tal")
        t.send(b"\r")
        t.expect(b"42")
        t.expect(b">>> ")
        t.send(b"while True: pass\r")  # a compound statement goes on until an empty line,
        t.expect(b"... ")                # as in CPython's and MicroPython's REPLs
        t.send(b"\r")
        time.sleep(1)
        os.write(t.fd, b"\x03")  # Ctrl-C interrupts the busy loop on the board
        t.expect(b"KeyboardInterrupt")
        t.expect(b">>> ")
        t.send(b"twice(2)\r")
        t.expect(b"4")
        t.expect(b">>> ")  # the prompt is back: libedit reads the Ctrl-D
        t.send(b"\x04")
        assert t.wait() == 0
    finally:
        t.close()


# ---- mount ----

@pytest.fixture
def local(tmp_path):
    d = tmp_path / "local"
    (d / "pkg").mkdir(parents=True)
    (d / "mymod.py").write_text("def hi():\n    return 'hi from the host'\n")
    (d / "pkg" / "__init__.py").write_text("X = 5\n")
    (d / "pkg" / "sub.py").write_text("from . import X\nY = X + 1\n")
    (d / "data.txt").write_text("local data\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", d / "out-link")
    os.symlink("data.txt", d / "in-link")
    return d


def test_mount_import_read_and_list(board, local):
    r = board.mqb("mount", str(local), "+", "exec",
                  "import mymod, pkg.sub\nprint(mymod.hi(), pkg.X, pkg.sub.Y)\n"
                  "print(open('/remote/data.txt').read().strip())\n"
                  "print(open('/remote/in-link').read().strip())\n"
                  "import os\nprint(sorted(os.listdir('/remote')))\n"
                  "print(os.stat('/remote/pkg')[0] & 0x4000 != 0)", text=True)
    assert r.stdout == ("hi from the host 5 6\nlocal data\nlocal data\n"
                        "['data.txt', 'in-link', 'mymod.py', 'pkg']\nTrue\n")
    assert "mounted at /remote" in r.stderr
    # The mount ended with mqboard: /remote is the board's own (missing) directory again.
    r = board.mqb("eval", "open('/remote/data.txt').read()", check=False, text=True)
    assert r.returncode == 1 and "No such file" in r.stderr


def test_mount_is_read_only_unless_rw(board, local):
    r = board.mqb("mount", str(local), "+", "exec", "open('/remote/new.txt', 'w').write('x')",
                  check=False, text=True)
    assert r.returncode == 1 and "read-only" in r.stderr
    assert not (local / "new.txt").exists()
    board.mqb("mount", "--rw", str(local), "+", "exec",
              "f = open('/remote/new.txt', 'w')\nf.write('written ' * 10000)\nf.close()\n"
              "import os\nos.mkdir('/remote/d')\nos.rename('/remote/new.txt', '/remote/d/n.txt')\n"
              "os.remove('/remote/data.txt')")
    assert (local / "d" / "n.txt").read_text() == "written " * 10000
    assert not (local / "data.txt").exists()


def test_mount_escapes_are_refused(board, local, tmp_path):
    r = board.mqb("mount", "--rw", str(local), "+", "exec",
                  "open('/remote/out-link').read()", check=False, text=True)
    assert r.returncode == 1 and "outside the mounted directory" in r.stderr
    # A board that asks for '..' paths itself (a compromised board) gets nothing either.
    probe = ("import _mqb, json\n"
             "for q in ({'op':'read','path':'/../secret.txt','off':0,'len':100},\n"
             "          {'op':'read','path':'/pkg/../../secret.txt','off':0,'len':100},\n"
             "          {'op':'create','path':'/../evil.txt'},\n"
             "          {'op':'write','path':'/out-link','off':0},\n"
             "          {'op':'rename','path':'/data.txt','to':'/../moved.txt'},\n"
             "          {'op':'rmdir','path':'/'},\n"
             "          {'op':'list','path':'/..'},\n"
             "          {'op':'bogus','path':'/'}):\n"
             "    print(_mqb.ask(1, json.dumps(q).encode() + b'\\nEVIL', 5, 1000)[:1])")
    r = board.mqb("mount", "--rw", str(local), "+", "exec", probe, text=True)
    assert r.stdout == "b'-'\n" * 8
    assert (tmp_path / "secret.txt").read_text() == "outside\n"
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "moved.txt").exists()
    assert (local / "data.txt").exists()


def test_mount_serves_the_repl_and_its_lease_is_renewed_at_the_prompt(board, local, tmp_path):
    t = Pty(board.mqb_args("--lease", "3", "mount", str(local)), tmp_path)  # then a repl
    try:
        t.expect(b">>> ")
        time.sleep(4)  # idle at the prompt for longer than the lease
        t.send(b"import mymod; mymod.hi()\r")
        t.expect(b"'hi from the host'")
        t.expect(b">>> ")  # the prompt is back: libedit reads the Ctrl-D
        t.send(b"\x04")
        assert t.wait() == 0
    finally:
        t.close()


def test_mount_of_a_vanished_host_ends_with_its_lease(board, local):
    p = subprocess.Popen(board.mqb_args("--lease", "2", "mount", str(local), "+", "exec",
                                        "import time\nwhile True: time.sleep(0.1)"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        time.sleep(3.5)  # the eval's and the mount's leases end: both are gone
        r = board.mqb("eval", "import os\nos.listdir('/remote')", check=False, text=True)
        assert r.returncode == 1 and "No such file" in r.stderr
    finally:
        stop(p)


def test_mount_wrong_arguments_and_boards_that_cannot(board, broker, local, tmp_path):
    r = board.mqb("mount", check=False, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    r = board.mqb("mount", str(local / "data.txt"), "+", "eval", "1", check=False, text=True)
    assert r.returncode == 5 and "not a directory" in r.stderr
    r = board.mqb("mount", str(tmp_path / "missing"), check=False, text=True)
    assert r.returncode == 5
    r = board.mqb("mount", "a", "b", check=False, text=True)
    assert r.returncode == 2
    (tmp_path / "orig").mkdir()
    original = Board(broker, tmp_path / "orig", "--original")
    try:
        r = original.mqb("mount", str(local), "+", "eval", "1", check=False, text=True)
        assert r.returncode == 1 and "cannot mount" in r.stderr and "not supported" in r.stderr
    finally:
        original.stop()


def test_a_question_to_nobody_is_an_error_not_a_hang(board):
    # No mount: asking the mount is ENODEV at once.
    r = board.mqb("exec", "import _mqb\n_mqb.ask(1, b'{\"op\":\"stat\",\"path\":\"/\"}', 5, 100)",
                  check=False, text=True)
    assert r.returncode == 1 and "No such device" in r.stderr


def test_mount_fifo_and_a_racing_symlink_swap(board, local, tmp_path):
    """Issue 21: a board writing to (or reading) a FIFO in a --rw mount gets an error at
    once, mqboard never hangs; and a local process that swaps a directory for a symlink out
    of the mount while the board reads through it never leaks the outside file (paths are
    opened beneath the mount's descriptor, not checked and then reopened by name)."""
    os.mkfifo(local / "fifo")
    r = board.mqb("-T", "5", "mount", "--rw", str(local), "+", "exec",
                  "for m in ('w', 'r'):\n"
                  " try:\n  f = open('/remote/fifo', m)\n  f.write('x') if m == 'w' else f.read()\n"
                  "  f.close()\n  print('opened')\n"
                  " except OSError as e:\n  print('refused')", timeout=30, text=True)
    assert r.returncode == 0 and r.stdout == "refused\nrefused\n"
    (local / "sub").mkdir()
    (local / "sub" / "f.txt").write_text("inside\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f.txt").write_text("SECRET\n")
    stop_swap = tmp_path / "stop"
    swapper = subprocess.Popen(
        ["/usr/bin/python3", "-c",
         "import os, sys\nl, o, stop = sys.argv[1:]\n"
         "os.rename(l + '/sub', l + '/sub.real')\n"
         "while not os.path.exists(stop):\n"
         " os.symlink(o, l + '/sub.new'); os.rename(l + '/sub.new', l + '/sub')\n"
         " os.remove(l + '/sub'); os.symlink('sub.real', l + '/sub')\n"
         " os.rename(l + '/sub', l + '/sub.x'); os.remove(l + '/sub.x')\n"
         " os.symlink('sub.real', l + '/sub')\n"
         " os.remove(l + '/sub')\n",
         str(local), str(tmp_path / "outside"), str(stop_swap)])
    try:
        r = board.mqb("mount", str(local), "+", "exec",
                      "seen = set()\nfor i in range(150):\n"
                      " try:\n  seen.add(open('/remote/sub/f.txt').read().strip())\n"
                      " except OSError:\n  pass\nprint(sorted(seen))", timeout=120, text=True)
    finally:
        stop_swap.write_text("")
        swapper.wait(timeout=10)
    assert "SECRET" not in r.stdout, r.stdout


def test_mpremote_habits(board, tmp_path):
    """Issue 20: what a MicroPython user's fingers type, from mpremote."""
    (board.root / "a.txt").write_text("alpha\n")
    assert "a.txt" in board.out("fs", "ls", "/")
    assert board.out("fs", "cat", "/a.txt") == "alpha\n"
    sha = board.out("sha256sum", "/a.txt")
    assert board.out("fs", "hashfile", "/a.txt") == sha == board.out("hashfile", "/a.txt")
    local = tmp_path / "b.txt"
    local.write_text("beta\n")
    board.mqb("fs", "cp", "-f", str(local), ":b.txt")
    assert (board.root / "b.txt").read_text() == "beta\n"
    assert board.out("rm", "-v", "/b.txt") == "removed '/b.txt'\n"
    boot = board.status()["boot_id"]
    assert board.out("soft-reset", "+", "eval", "1+1") == "2\n"  # waits until it is back
    assert board.status()["boot_id"] != boot and board.status()["reset_cause"] == "soft"
    assert board.mqb("fs", "bogus", check=False).returncode == 2
    assert "soft-reset is" in board.out("--help")
    # mqboard alone on a terminal is a repl, as mpremote.
    t = Pty(board.mqb_args(), tmp_path)
    try:
        t.expect(b">>> ")
        t.send(b"6 * 7\r")
        t.expect(b"42")
        t.expect(b">>> ")
        t.send(b"\x04")
        assert t.wait() == 0
    finally:
        t.close()
    r = subprocess.run(board.mqb_args(), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30)
    assert r.returncode == 2  # not on a terminal: the usage, no repl reading a pipe


def test_mount_edit_run_loop(board, local):
    """Issue 20: after editing hello.py, `mqboard mount src + exec 'import hello'` printed
    nothing: the module stayed imported. A new mount forgets modules of an earlier one."""
    (local / "hello.py").write_text("print('first')\n")
    assert board.out("mount", str(local), "+", "exec", "import hello") == "first\n"
    (local / "hello.py").write_text("print('second')\n")
    assert board.out("mount", str(local), "+", "exec", "import hello") == "second\n"
    # Within one mount, imported is imported (as anywhere in Python).
    r = board.mqb("mount", str(local), "+", "exec", "import hello", "+", "exec", "import hello",
                  text=True)
    assert r.stdout == "second\n"


def test_mount_unsafe_links(board, local):
    """mpremote's `mount -l`: symlinks that lead out of the directory are followed when asked
    for; without it they are refused. A board still cannot name '..'."""
    r = board.mqb("mount", "-l", str(local), "+", "exec",
                  "print(open('/remote/out-link').read().strip())", text=True)
    assert r.stdout == "outside\n" and "symlinks may lead out" in r.stderr
    r = board.mqb("mount", "-l", str(local), "+", "exec", "open('/remote/../secret.txt').read()",
                  check=False, text=True)
    assert r.returncode == 1


def test_mount_makes_remote_the_working_directory(board, local):
    """Issue 20: as with mpremote's mount, relative paths go to the mounted directory while
    it is mounted; afterwards the board's own directory is the working directory again."""
    (board.root / "data.txt").write_text("the board's own\n")
    r = board.mqb("mount", str(local), "+", "exec",
                  "import os\nprint(os.getcwd())\nprint(open('data.txt').read().strip())\n"
                  "print('mymod.py' in os.listdir())", text=True)
    assert r.stdout == "/remote\nlocal data\nTrue\n"
    assert board.out("exec", "import os\nprint(os.getcwd(), open('data.txt').read().strip())") \
        == "/ the board's own\n"
