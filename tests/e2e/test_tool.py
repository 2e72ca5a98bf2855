"""mqboard's commands end to end, against mqrepld through a real broker: each command, its
negative cases, hostile names, --json, config profiles, big transfers and a board or broker
that goes away."""

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, BROKER, REPO, Board, Broker, board_files, stop

REPO_DIST = REPO / "dist"

HOSTILE = "it's a \"quoted\" name \\ with spaces.txt"


def test_help_and_version(board):
    r = board.mqb("--version", text=True)
    assert r.stdout.startswith("mqboard ")
    r = board.mqb("help", text=True)
    for cmd in ("eval", "exec", "run", "put", "get", "ls", "sync", "ota", "reset", "view"):
        assert f"  {cmd} " in r.stdout
    assert "usage: mqboard [options] ls [-lrRa] [DIR]" in board.out("help", "ls")
    assert board.mqb("help", "nosuch", check=False).returncode == 2


def test_start_up_loads_no_library_only_repl_or_mip_needs(board):
    """libcurl (mip) and libedit (repl) are loaded when those commands run, not linked: every
    other command would pay for their start-up (issue 17). What a command maps is in
    /proc/PID/maps while it waits for a board's answer."""
    needed = subprocess.run(["readelf", "-d", str(BIN / "mqboard")], capture_output=True,
                            text=True, check=True).stdout
    assert "libcurl" not in needed and "libedit" not in needed
    p = subprocess.Popen(board.mqb_args("eval", "import time; time.sleep(2)"))
    try:
        maps = ""
        end = time.monotonic() + 10
        while "libmosquitto" not in maps and time.monotonic() < end:
            with open(f"/proc/{p.pid}/maps") as f:
                maps = f.read()
            time.sleep(0.05)
        assert "libmosquitto" in maps and "libcurl" not in maps and "libedit" not in maps
    finally:
        stop(p)


def test_exec_shows_output_not_values(board):
    assert board.out("exec", "1+1") == ""
    assert board.out("exec", "print(5)") == "5\n"
    assert board.out("eval", "1+1") == "2\n"


def test_run_script(board, tmp_path):
    script = tmp_path / "s.py"
    body = "\n".join(f"v{i} = {i}" for i in range(8000))  # > 64 KiB: several messages
    script.write_text(body + "\nprint(sum(globals()[f'v{i}'] for i in range(8000)))\n")
    assert os.path.getsize(script) > 65536
    assert board.out("run", str(script)) == f"{sum(range(8000))}\n"
    r = board.mqb("run", str(tmp_path / "missing.py"), check=False, text=True)
    assert r.returncode == 5


def test_ls_mkdir_rmdir_rm_mv(board):
    board.out("mkdir", "-p", "a/b/c")
    assert (board.root / "a/b/c").is_dir()
    board.out("mkdir", "-p", "a/b/c")  # exists: fine with -p
    r = board.mqb("mkdir", "a", check=False, text=True)
    assert r.returncode == 1 and "mkdir: \"a\"" not in r.stderr and "File exists" in r.stderr
    (board.root / "a/f.txt").write_bytes(b"12345")
    assert board.out("ls", "a") == "b/\nf.txt\n" or board.out("ls", "a") == "f.txt\nb/\n"
    assert "-            5  f.txt" in board.out("ls", "-l", "a")
    assert sorted(board.out("ls", "-r", "a").split()) == ["b/", "b/c/", "f.txt"]
    board.out("mv", "a/f.txt", "a/b")
    assert (board.root / "a/b/f.txt").read_bytes() == b"12345"
    board.out("mv", "a/b/f.txt", "g.txt")
    assert (board.root / "g.txt").exists()
    board.out("rm", "g.txt")
    assert not (board.root / "g.txt").exists()
    r = board.mqb("rmdir", "a", check=False, text=True)
    assert r.returncode == 1 and "not empty" in r.stderr
    board.out("rmdir", "a/b/c")
    board.out("rm", "-r", "a")
    assert board_files(board.root) == []
    r = board.mqb("rm", "-r", "/", check=False, text=True)
    assert r.returncode == 2 and "refusing" in r.stderr
    r = board.mqb("ls", "nope", check=False, text=True)
    assert r.returncode == 1 and "nope: No such file or directory" in r.stderr
    r = board.mqb("rm", "nope", check=False, text=True)
    assert r.returncode == 1


def test_tree_and_df(board):
    (board.root / "lib").mkdir()
    (board.root / "lib/x.py").write_text("x")
    (board.root / "main.py").write_text("m")
    out = board.out("tree")
    assert "|-- lib/" in out and "    |-- x.py" in out and "1 directories, 2 files" in out
    df = board.out("df")
    assert "Size" in df and "Avail" in df


def test_hostile_names(board, tmp_path):
    src = tmp_path / "src.txt"
    src.write_bytes(b"hostile")
    for name in (HOSTILE, "'); import os; os.remove('victim'); x=('", "naïve €.txt"):
        (board.root / "victim").write_text("still here")
        board.mqb("put", str(src), name)
        assert (board.root / name).read_bytes() == b"hostile"
        assert board.mqb("cat", name).stdout == b"hostile"
        assert name in board.out("ls")
        assert hashlib.sha256(b"hostile").hexdigest() in board.out("sha256sum", name)
        board.out("rm", name)
        assert not (board.root / name).exists()
        assert (board.root / "victim").read_text() == "still here"
    for bad in ("a#b", "a+b", "new\nline"):
        r = board.mqb("put", str(src), bad, check=False, text=True)
        assert r.returncode == 2 and "cannot contain '+', '#' or control" in r.stderr
    board.out("mkdir", HOSTILE)
    assert (board.root / HOSTILE).is_dir()
    board.out("rmdir", HOSTILE)


def test_sha256sum(board):
    (board.root / "a.bin").write_bytes(os.urandom(10000))
    want = hashlib.sha256((board.root / "a.bin").read_bytes()).hexdigest()
    assert board.out("sha256sum", "a.bin") == f"{want}  a.bin\n"


def test_put_get_trees(board, tmp_path):
    src = tmp_path / "proj"
    (src / "lib/sub").mkdir(parents=True)
    (src / "main.py").write_text("main")
    (src / "lib/a.py").write_text("a")
    (src / "lib/sub/b.py").write_text("b")
    r = board.mqb("put", str(src), "proj", check=False, text=True)
    assert r.returncode == 2 and "put -r" in r.stderr
    # rsync's rule: "DIR/" copies the contents, "DIR" the directory itself.
    board.mqb("put", "-r", str(src) + "/", "proj")
    assert (board.root / "proj/lib/sub/b.py").read_text() == "b"
    board.mqb("put", "-r", str(src / "lib"), "proj2/")
    assert (board.root / "proj2/lib/sub/b.py").read_text() == "b"
    back = tmp_path / "back"
    board.mqb("get", "-r", "proj/", str(back))
    assert (back / "lib/sub/b.py").read_text() == "b"
    assert (back / "main.py").read_text() == "main"
    board.mqb("get", "-r", "proj", str(back))
    assert (back / "proj/lib/sub/b.py").read_text() == "b"
    # Several files into a directory.
    board.mqb("put", str(src / "main.py"), str(src / "lib/a.py"), "many/")
    assert sorted(p.name for p in (board.root / "many").iterdir()) == ["a.py", "main.py"]


def test_sync_tree(board, tmp_path):
    src = tmp_path / "app"
    (src / "lib").mkdir(parents=True)
    (src / "main.py").write_text("v1")
    (src / "lib/u.py").write_text("u")
    out = board.out("sync", str(src), "/app")
    assert "2 put, 0 removed, 0 unchanged" in out
    assert (board.root / "app/lib/u.py").read_text() == "u"
    assert "0 put, 0 removed, 2 unchanged" in board.out("sync", str(src), "/app")
    (src / "main.py").write_text("v2")
    out = board.out("sync", "-n", str(src), "/app")
    assert "(dry run) 1 put" in out and "changed" in out
    assert (board.root / "app/main.py").read_text() == "v1"
    assert "1 put" in board.out("sync", str(src), "/app")
    assert (board.root / "app/main.py").read_text() == "v2"
    (board.root / "app/extra.py").write_text("x")
    assert "0 removed" in board.out("sync", str(src), "/app")
    out = board.out("sync", "--delete", str(src), "/app")
    assert "rm   /app/extra.py" in out and "1 removed" in out
    assert not (board.root / "app/extra.py").exists()


def test_sync_spec(board, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.py").write_text("a")
    (tmp_path / "src/b.py").write_text("b")
    (tmp_path / "cfg.py").write_text("cfg")
    (tmp_path / "keep.py").write_text("keep")
    spec = tmp_path / "board.spec"
    spec.write_text(
        "# the original mqsync format\n"
        "/lib:\n"
        f"  {tmp_path}/src: *.py\n"
        "/:\n"
        f"  {tmp_path}: cfg.py->board_config.py\n"
        "/etc: --check-only\n"
        f"  {tmp_path}: keep.py\n")
    out = board.out("sync", str(spec))
    assert "Target directory /lib" in out
    assert (board.root / "lib/a.py").read_text() == "a"
    assert (board.root / "board_config.py").read_text() == "cfg"
    assert not (board.root / "etc/keep.py").exists()  # --check-only reports, never copies
    assert "skip missing" in out
    assert "0 put" in board.out("sync", str(spec))
    bad = tmp_path / "bad.spec"
    bad.write_text("  orphan.py\n")
    r = board.mqb("sync", str(bad), check=False, text=True)
    assert r.returncode == 2 and "no target directory" in r.stderr


def test_json_output(board):
    doc = json.loads(board.out("--json", "eval", "6*7"))
    assert doc["ok"] is True and doc["result"] == "42" and doc["exit_code"] == 0
    assert doc["output"] == ""  # issue 20: the value is the result, not output
    doc = json.loads(board.out("--json", "eval", "print('hi', end=''); x = 1"))
    assert doc["output"] == "hi\n" and doc["result"] is None  # statements: output only
    doc = json.loads(board.out("--json", "eval", "print('a') or [1, 'b\\n']"))
    assert doc["output"] == "a\n" and doc["result"] == "[1, 'b\\n']"
    assert doc["error"] is None and doc["elapsed_s"] >= 0
    doc = json.loads(board.mqb("--json", "eval", "1/0", check=False, text=True).stdout)
    assert doc["ok"] is False and doc["exit_code"] == 1 and "ZeroDivisionError" in doc["error"]
    (board.root / "f.txt").write_text("xyz")
    doc = json.loads(board.out("--json", "ls"))
    assert doc["result"] == [{"path": "./f.txt", "name": "f.txt", "type": "file", "size": 3}]
    doc = json.loads(board.out("--json", "status"))
    assert doc["result"]["status"] == "online"


def test_config_profiles(board, tmp_path):
    cfg = tmp_path / "xdg" / "mqboard"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text(
        f"server = 127.0.0.1\nport = {board.broker.port}\n"
        f"[kitchen]\nprefix = {board.prefix}\n[bad]\nprefix = nobody/here\n")
    env = {"PATH": os.environ["PATH"], "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    run = lambda *a: subprocess.run([str(BIN / "mqboard"), *a], capture_output=True, text=True,
                                    env=env, timeout=60)
    assert run("-b", "kitchen", "eval", "2+2").stdout == "4\n"
    assert run("-b", "bad", "-T", "0.3", "eval", "1").returncode == 3
    # Options override the profile.
    assert run("-b", "bad", "--prefix", board.prefix, "eval", "3").stdout == "3\n"
    r = run("-b", "nosuch", "eval", "1")
    assert r.returncode == 2 and "no [nosuch] profile" in r.stderr
    # A board named on the command line wins over the environment (issue 20): with the
    # demo's MQBOARD_PREFIX set, -b kitchen still reaches the kitchen, and -v says why.
    env["MQBOARD_PREFIX"] = "demo/elsewhere"
    r = run("-v", "-b", "kitchen", "eval", "5")
    assert r.stdout == "5\n"
    assert f"board '{board.prefix}' (from " in r.stderr and "profile [kitchen], " in r.stderr
    assert "it replaces 'demo/elsewhere' from MQBOARD_PREFIX" in r.stderr
    r = run("-v", "eval", "1")  # without -b the variable names the board
    assert r.returncode == 3 and "board 'demo/elsewhere' (from MQBOARD_PREFIX)" in r.stderr
    # MQBOARD_BOARD is the environment too: a variable of the same rank overrides it.
    env["MQBOARD_BOARD"] = "kitchen"
    assert run("-T", "1", "eval", "1").returncode == 3
    env["MQBOARD_PREFIX"] = ""
    assert run("eval", "6").stdout == "6\n"
    # status names the board it talked to.
    assert run("-b", "kitchen", "status").stdout.startswith(f"{board.prefix}: online  ")


def test_big_transfers_default_broker(board, tmp_path):
    data = os.urandom(50 * 1024 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    board.mqb("-q", "put", str(src), "big.bin", timeout=300)
    assert hashlib.sha256((board.root / "big.bin").read_bytes()).digest() == \
        hashlib.sha256(data).digest()
    out = tmp_path / "back.bin"
    board.mqb("-q", "get", "big.bin", str(out), timeout=300)
    assert out.read_bytes() == data


def test_wrong_hash_put_keeps_old_file(board):
    (board.root / "app.py").write_bytes(b"old")
    topic = f"{board.prefix}/mqb/cmd/xput/BadHash1/app.py"
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(board.broker.port), "-C", "1", "-W", "10",
         "-t", f"{board.prefix}/mqb/reply/err/BadHash1"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    for payload in (b"\x00\x00new contents", b"\x80\x01" + b"0" * 64):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(board.broker.port), "-q",
                        "1", "-t", topic, "-s"], input=payload, check=True)
    out, _ = sub.communicate(timeout=15)
    assert "hash mismatch: app.py" in out
    assert (board.root / "app.py").read_bytes() == b"old"


def test_board_stops_answering(board):
    os.kill(board.proc.pid, signal.SIGSTOP)
    try:
        r = board.mqb("-T", "1", "eval", "1", check=False, text=True)
        assert r.returncode == 3 and "no answer from board" in r.stderr
    finally:
        os.kill(board.proc.pid, signal.SIGCONT)


def test_broker_goes_away_mid_transfer(tmp_path):
    broker = Broker(tmp_path)
    b = Board(broker, tmp_path)
    try:
        (b.root / "big.bin").write_bytes(b"old")
        src = tmp_path / "big.bin"
        src.write_bytes(os.urandom(30 * 1024 * 1024))
        p = subprocess.Popen(b.mqb_args("-q", "put", str(src), "big.bin"),
                             stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        broker.stop()
        _, err = p.communicate(timeout=60)
        assert p.returncode in (3, 4), err
        assert (b.root / "big.bin").read_bytes() == b"old"
    finally:
        b.stop()
        broker.close()


def test_ctrl_c_interrupts_the_board(board):
    p = subprocess.Popen(board.mqb_args("eval", "while True: pass"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 130
    assert "KeyboardInterrupt" in err
    assert board.out("-T", "2", "eval", "'alive'") == "'alive'\n"


def test_timeout_run(board):
    r = board.mqb("--timeout-run", "0.5", "eval", "import time\nwhile True: time.sleep(0.01)",
                  check=False, text=True)
    assert r.returncode == 124 and "KeyboardInterrupt" in r.stderr
    # Code that catches the interrupt and finishes still ran out of time: 124, as timeout(1).
    r = board.mqb("--timeout-run", "0.5", "exec",
                  "import time\ntry:\n while True: time.sleep(0.01)\n"
                  "except KeyboardInterrupt:\n print('cleaned up')", check=False, text=True)
    assert r.returncode == 124 and r.stdout == "cleaned up\n"


def test_json_reports_timeouts(broker):
    r = subprocess.run([str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", "nobody/here",
                        "-T", "0.3", "--json", "eval", "1"], capture_output=True, text=True)
    doc = json.loads(r.stdout)
    assert r.returncode == 3 and doc["exit_code"] == 3 and "no board answers at" in doc["error"]


def test_cp_touch_rm_f_and_chains(board, tmp_path):
    os.chdir(tmp_path)
    (tmp_path / "main.py").write_text("print('main ran')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/m.py").write_text("M = 1\n")
    r = board.mqb("cp", "main.py", ":", "+", "cp", "-r", "lib", ":", "+", "exec",
                  "import main", text=True)
    assert r.stdout == "main ran\n"
    assert (board.root / "lib/m.py").read_text() == "M = 1\n"
    board.mqb("cp", ":main.py", ":copy.py")
    assert (board.root / "copy.py").read_text() == "print('main ran')\n"
    board.mqb("cp", ":copy.py", str(tmp_path / "back.py"))
    assert (tmp_path / "back.py").read_text() == "print('main ran')\n"
    board.mqb("touch", ":flag", "+", "rm", "-f", ":flag", ":never-was")
    assert not (board.root / "flag").exists()
    r = board.mqb("rm", ":never-was", check=False, text=True)
    assert r.returncode == 1 and "never-was" in r.stderr
    # A chain stops at the first failure.
    r = board.mqb("cat", ":missing", "+", "touch", ":after", check=False, text=True)
    assert r.returncode == 1 and not (board.root / "after").exists()
    # A '+' that is not followed by a command is an argument.
    assert board.out("eval", "40", "+", "2") == "42\n"
    # The ':' marker where mpremote users type it.
    board.mqb("put", str(tmp_path / "main.py"), ":y.py")
    assert (board.root / "y.py").exists() and not (board.root / ":y.py").exists()
    r = board.mqb("cp", str(tmp_path / "main.py"), str(tmp_path / "x.py"), check=False,
                  text=True)
    assert r.returncode == 2 and "':'" in r.stderr


def test_edit_and_aliases(board, tmp_path):
    (board.root / "conf.txt").write_text("old\n")
    editor = tmp_path / "ed.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/old/new/' \"$1\"\n")
    editor.chmod(0o755)
    env = dict(os.environ, EDITOR=str(editor))
    r = subprocess.run(board.mqb_args("edit", ":conf.txt"), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (board.root / "conf.txt").read_text() == "new\n"
    # Unchanged: nothing is put. A new file starts empty.
    env["EDITOR"] = "true"
    r = subprocess.run(board.mqb_args("edit", ":conf.txt"), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "unchanged" in r.stderr
    env["EDITOR"] = f"sh -c 'echo fresh > \"$0\"'"
    subprocess.run(board.mqb_args("edit", ":fresh.txt"), env=env, check=True, timeout=60)
    assert (board.root / "fresh.txt").read_text() == "fresh\n"
    # Issue 20: a new file is said as such (no error), an editor's exit status is its own,
    # and a name with a quote is never parsed by the shell.
    r = subprocess.run(board.mqb_args("edit", ":it's new.txt"), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "a new file" in r.stderr and "no such" not in r.stderr
    assert (board.root / "it's new.txt").read_text() == "fresh\n"
    env["EDITOR"] = "false"
    r = subprocess.run(board.mqb_args("edit", ":conf.txt"), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 5 and "exited with status 1:" in r.stderr
    # Aliases from the config file, with the rest of the command line after them.
    cfg = tmp_path / "cfg/mqboard"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text("alias.hello = exec \"print('hello', end=' ')\"\n"
                                "alias.ll = ls -l\nalias.bad = exec $(touch /tmp/pwned)\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    r = subprocess.run(board.mqb_args("hello", "+", "ll", "/"), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("hello ") and "conf.txt" in r.stdout
    r = subprocess.run(board.mqb_args("bad"), env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "cannot be split" in r.stderr


def make_index(root):
    """A small package index in micropython-lib's layout: pkg 'greet' (two files, one in a
    subpackage) depends on 'util'; 'evil' names a file outside the target; 'liar' has a file
    that does not match its hash."""
    files = {}

    def add(data):
        h = hashlib.sha256(data).hexdigest()[:8]  # files are named by a short hash
        (root / "file" / h[:2]).mkdir(parents=True, exist_ok=True)
        (root / "file" / h[:2] / h).write_bytes(data)
        return h

    def package(name, hashes, deps=()):
        d = root / "package/py" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "latest.json").write_text(json.dumps(
            {"hashes": hashes, "deps": [[x, "latest"] for x in deps], "version": "1.0"}))

    package("util", [["util.py", add(b"def twice(x): return 2 * x\n")]])
    package("greet", [["greet/__init__.py", add(b"from util import twice\nN = twice(21)\n")],
                      ["greet/extra.py", add(b"E = 1\n")]], deps=["util"])
    package("evil", [["../../outside.py", add(b"bad\n")]])
    h = add(b"the real thing\n")
    (root / "file" / h[:2] / h).write_bytes(b"something else\n")
    package("liar", [["liar.py", h]])


def test_mip_install(board, tmp_path):
    index = tmp_path / "index"
    make_index(index)
    from conftest import free_port, wait_port
    port = free_port()
    http = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(index)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        board.mqb("mip", "install", "--index", f"http://127.0.0.1:{port}", "greet")
        assert board.out("exec", "import greet\nprint(greet.N)") == "42\n"
        assert (board.root / "lib/util.py").exists()
        assert (board.root / "lib/greet/extra.py").exists()
        # A directory as the index, another target.
        board.mqb("mip", "install", "--index", str(index), "--target", ":/apps", "util")
        assert (board.root / "apps/util.py").exists()
        r = board.mqb("mip", "install", "--index", str(index), "evil", check=False, text=True)
        assert r.returncode == 1 and "refusing" in r.stderr
        assert not any(p.name == "outside.py" for p in tmp_path.rglob("*"))
        r = board.mqb("mip", "install", "--index", str(index), "liar", check=False, text=True)
        assert r.returncode == 1 and "does not match its hash" in r.stderr
        assert not (board.root / "lib/liar.py").exists()
        r = board.mqb("mip", "install", "--index", str(index), "nosuch", check=False, text=True)
        assert r.returncode == 5 and "nosuch" in r.stderr
    finally:
        stop(http)


def test_boards(broker, tmp_path):
    # On the aedes cluster too: a board that has just started is found by its answer to the
    # discovery question, whenever the cluster delivers its retained status.
    (tmp_path / "deep").mkdir()
    (tmp_path / "orig").mkdir()
    deep = Board(broker, tmp_path / "deep")
    orig = Board(broker, tmp_path / "orig", "--original", "--wdt-timeout", "0")
    cfg = tmp_path / "cfg/mqboard"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text(f"port = {broker.port}\n[old]\nprefix = {orig.prefix}\n"
                                "[gone]\nprefix = nobody/here\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    mqb = [str(BIN / "mqboard"), "-p", str(broker.port)]
    try:
        r = subprocess.run(mqb + ["--json", "boards", deep.prefix.split("/")[0] + "/+"],
                           capture_output=True, text=True, env=env, timeout=30)
        found = json.loads(r.stdout)["result"]
        assert found[deep.prefix]["status"] == "online" and orig.prefix not in found
        assert found[deep.prefix]["agent"].startswith("mqrepld")
        r = subprocess.run(mqb + ["boards", "--probe"], capture_output=True, text=True, env=env,
                           timeout=60)
        lines = {l.split()[0]: l for l in r.stdout.splitlines()[1:]}
        assert "answers" in lines[orig.prefix] and "silent" in lines["nobody/here"]
        assert "online" in lines[deep.prefix]
        deep.stop()
        r = subprocess.run(mqb + ["--json", "boards", deep.prefix], capture_output=True,
                           text=True, env=env, timeout=30)
        assert json.loads(r.stdout)["result"][deep.prefix]["status"] == "offline"
    finally:
        if deep.proc.poll() is None:
            deep.stop()
        orig.stop()


def test_rtc_and_tree_sizes(board):
    import datetime
    out = board.out("rtc").strip()
    board_time = datetime.datetime.strptime(out, "%Y-%m-%d %H:%M:%S")
    assert abs((board_time - datetime.datetime.now()).total_seconds()) < 5
    assert board.mqb("rtc", "--set").returncode == 0
    assert board.mqb("rtc", "--bogus", check=False).returncode == 2
    doc = json.loads(board.out("--json", "rtc"))  # issue 20: rtc and sync have JSON forms
    assert datetime.datetime.strptime(doc["result"]["datetime"], "%Y-%m-%dT%H:%M:%S")
    (board.root / "d").mkdir()
    (board.root / "d/f.bin").write_bytes(b"x" * 2048)
    assert "|-- f.bin [2.0K]" in board.out("tree", "-s", "/d")


def test_many_boards_at_once(tmp_path):
    broker = Broker(tmp_path)  # of its own: a pattern sees these boards only
    boards = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        boards.append(Board(broker, tmp_path / name))
    base = boards[0].prefix.split("/")[0]
    cfg = tmp_path / "cfg/mqboard"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text(f"port = {broker.port}\n[first]\nprefix = {boards[0].prefix}\n"
                                f"[group two]\nmembers = first {boards[1].prefix} gone/board\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    mqb = [str(BIN / "mqboard"), "-p", str(broker.port)]
    try:
        pattern = [b.prefix for b in boards]
        r = subprocess.run(mqb + ["-b", "two", "exec", "print('hi')"], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 1  # one member is offline: not all succeeded
        assert f"{boards[0].prefix}: hi" in r.stdout and f"{boards[1].prefix}: hi" in r.stdout
        assert "2 ok, 0 failed, 1 offline" in r.stdout and "gone/board: " in r.stderr
        for b in boards:
            (b.root / "x.txt").write_text(b.prefix)
        r = subprocess.run(mqb + ["--prefix", base + "/+", "--parallel", "2", "--json", "cat",
                                  "/x.txt"], capture_output=True, text=True, env=env,
                           timeout=60)
        doc = json.loads(r.stdout)
        found = {p: d["output"] for p, d in doc["result"]["boards"].items()}
        assert found == {p: p for p in pattern}
        assert r.returncode == 0 and doc["result"]["ok"] == 3
    finally:
        for b in boards:
            b.stop()
        broker.close()


def test_sync_onto_a_file_does_nothing_and_the_summary_counts_what_happened(board, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "a.py").write_text("a")
    (board.root / "main.py").write_text("m")
    r = board.mqb("sync", f"{app}/", "/main.py", check=False, text=True)
    assert r.returncode == 1 and "'/main.py' on the board is a file" in r.stderr
    assert "0 put" in r.stdout and "1 put" not in r.stdout
    assert (board.root / "main.py").read_text() == "m"
    # A put that fails is counted as failed, not as put.
    (board.root / "app").mkdir()
    (board.root / "app" / "a.py").mkdir()  # a directory where the file goes
    r = board.mqb("sync", f"{app}/", "/app", check=False, text=True)
    assert r.returncode == 1 and "0 put" in r.stdout and "1 failed" in r.stdout
    r = board.mqb("--json", "sync", f"{app}/", "/app2", text=True)
    doc = json.loads(r.stdout)["result"]
    assert doc["put"] == 1 and doc["failed"] == 0 and doc["dry_run"] is False


def test_mip_packages_cannot_reach_the_admins_disk_or_network(board, tmp_path):
    """Issue 21: a package's "urls" entry never leaves the package's directory; a package
    fetched from a URL never names a local path, nor makes mqboard connect to an address of
    this machine other than the URL the user typed (an internal service)."""
    from conftest import free_port, wait_port
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("PRIVATE KEY\n")
    pkg = tmp_path / "home" / "pkgs" / "evil"
    pkg.mkdir(parents=True)
    (pkg / "ok.py").write_text("OK = 1\n")
    (pkg / "package.json").write_text(json.dumps(
        {"urls": [["ok.py", "ok.py"], ["stolen.txt", "../../.ssh/id_rsa"]]}))
    (pkg / "link.json").write_text(json.dumps({"urls": [["stolen.txt", "alias"]]}))
    (pkg / "alias").symlink_to(secret)
    for desc in ("package.json", "link.json"):
        r = board.mqb("mip", "install", str(pkg / desc), check=False, text=True)
        assert r.returncode == 1 and "not a file beneath the package's directory" in r.stderr
    assert not (board.root / "lib" / "stolen.txt").exists()
    (board.root / "lib" / "ok.py").unlink()  # the entry before the refused one went in
    # Served over http: a dependency that is a local path, and a file on another local port.
    site = tmp_path / "site"
    (site / "a").mkdir(parents=True)
    internal = tmp_path / "internal"
    internal.mkdir()
    (internal / "answer").write_text("internal only\n")
    port, iport = free_port(), free_port()
    (site / "a" / "package.json").write_text(json.dumps({"deps": [[str(pkg), "latest"]]}))
    (site / "b.json").write_text(json.dumps(
        {"urls": [["x.txt", f"http://127.0.0.1:{iport}/answer"]]}))
    (site / "c.json").write_text(json.dumps({"urls": [["c.py", "c.py"]]}))
    (site / "c.py").write_text("C = 3\n")
    servers = [subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(p), "--bind",
                                 "127.0.0.1", "--directory", str(d)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for p, d in ((port, site), (iport, internal))]
    try:
        wait_port(port)
        wait_port(iport)
        r = board.mqb("mip", "install", f"http://127.0.0.1:{port}/a/", check=False, text=True)
        assert r.returncode == 1 and "never names a local path" in r.stderr
        assert not (board.root / "lib" / "ok.py").exists()
        r = board.mqb("mip", "install", f"http://127.0.0.1:{port}/b.json", check=False,
                      text=True)
        assert r.returncode == 1 and f"127.0.0.1 port {iport}" in r.stderr
        assert not (board.root / "lib" / "x.txt").exists()
        # The user's own host and port serves the package's files.
        board.mqb("mip", "install", f"http://127.0.0.1:{port}/c.json")
        assert (board.root / "lib" / "c.py").read_text() == "C = 3\n"
    finally:
        for s in servers:
            stop(s)


def test_misplaced_and_mistyped_options_get_one_line_and_a_hint(board):
    """Issue 20: `mqboard ls --json` said only its usage; `--prefx` printed the whole help."""
    r = board.mqb("ls", "--json", check=False, text=True)
    assert r.returncode == 2
    assert "--json is an option of mqboard itself: put it before the command" in r.stderr
    r = subprocess.run([str(BIN / "mqboard"), "--prefx", "a", "ls"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "did you mean --prefix?" in r.stderr
    assert len(r.stderr.splitlines()) <= 3 and "commands:" not in r.stderr


def test_bash_completion_works_without_the_bash_completion_package(tmp_path):
    """Issue 20: the completion used bash-completion's helpers and silently did nothing
    without that package; in plain bash it now completes commands, options and files."""
    (tmp_path / "hello.py").write_text("")
    script = REPO_DIST / "mqboard.bash-completion"
    def complete(*words):
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                            f"source {script}; declare -F _init_completion && exit 9; "
                            f"COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
                            "_mqboard; echo ${COMPREPLY[@]}"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()
    assert complete("mqboard", "ev") == ["eval"]
    assert "--no-stdin" in complete("mqboard", "--no-")
    assert complete("mqboard", "put", "hel") == ["hello.py"]
    assert complete("mqboard", "reset", "--s") == ["--safe", "--soft"]


def test_mip_github_and_gitlab_short_forms(board):
    """Issue 20: mip install github:org/repo (and gitlab:) as mpremote and mip take them: the
    repository's raw files at the branch after '@' (HEAD without). This machine reaches no
    such host, so the test checks where mqboard went (the fetch's error names the URL)."""
    cases = {"github:org/repo": "https://raw.githubusercontent.com/org/repo/HEAD/package.json",
             "github:org/repo/sub/pkg@v2":
                 "https://raw.githubusercontent.com/org/repo/v2/sub/pkg/package.json",
             "gitlab:org/repo@main": "https://gitlab.com/org/repo/-/raw/main/package.json",
             "github:org/repo/x.json": "https://raw.githubusercontent.com/org/repo/HEAD/x.json"}
    for name, url in cases.items():
        r = board.mqb("-T", "2", "mip", "install", name, check=False, text=True, timeout=120)
        assert r.returncode != 0 and f"cannot fetch {url}:" in r.stderr, (name, r.stderr)
    r = board.mqb("mip", "install", "github:nothing", check=False, text=True)
    assert r.returncode != 0 and "github:nothing" in r.stderr


def test_mip_says_what_a_package_names_escaped(board, tmp_path):
    """Issue 21: names from a package (refused files, dependencies) never drive the
    terminal: ESC and C1 controls are shown escaped."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "files.json").write_text(json.dumps(
        {"urls": [["\x1b[2Jx.py", "x.py"]]}))
    (pkg / "deps.json").write_text(json.dumps({"deps": [["\u009b2J\x1b]0;evil\x07", "1"]]}))
    for desc in ("files.json", "deps.json"):
        r = board.mqb("mip", "install", str(pkg / desc), check=False, text=True)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "\x1b" not in out and "\u009b" not in out, out
        assert "\\x1b" in out, out
