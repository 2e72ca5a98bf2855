"""End-to-end fixture: a real mosquitto on a free loopback port, mqrepld on a temporary board
root, and mqboard run as a user runs it. Every process started here is stopped by its PID."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# mqboard reads its config and records boards' keys (known_boards) under XDG_CONFIG_HOME: the
# tests get one of their own, never the user's (a test that needs a config sets its own).
_CONFIG = tempfile.mkdtemp(prefix="mqb-test-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG
atexit.register(shutil.rmtree, _CONFIG, True)
BIN = Path(os.environ.get("MQB_BIN_DIR", REPO / "build"))
VECTORS = REPO / "tests" / "vectors" / "messages.txt"


def board_files(d):
    """The names in a board directory as a board lists them: without the agent's own
    temporary-file directory (.mqb-tmp in the root)."""
    return sorted(p.name for p in d.iterdir() if p.name != ".mqb-tmp")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def stop(proc, sig=signal.SIGTERM):
    """Stops a process we started, by its PID, and reaps it."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "alone: asserts a latency the README promises; runs after the parallel "
        "suite, one test at a time (tests/CMakeLists.txt)")


def pytest_sessionfinish(session, exitstatus):
    # The `-m alone` run on a broker where every such test is deselected has nothing to do.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config.option.markexpr:
        session.exitstatus = pytest.ExitCode.OK


BROKER = os.environ.get("MQB_BROKER", "mosquitto")
BROKERS_DIR = REPO / "tests" / "brokers"


class Broker:
    """The broker of a test, on free loopback ports. MQB_BROKER=mosquitto (default): one
    mosquitto. MQB_BROKER=aedes: a two-node aedes cluster over one redis-server
    (tests/brokers); the boards connect to one node (board_port), mqboard and the tests'
    own clients to the other (port), so every command crosses the cluster."""

    def __init__(self, tmp, extra=""):
        self.dir = tmp
        self.extra = extra
        self.procs = []
        if BROKER == "aedes" and extra:
            pytest.skip("needs mosquitto's own configuration")
        self.port = free_port()
        self.board_port = free_port() if BROKER == "aedes" else self.port
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"
        )
        if BROKER == "aedes":
            self.redis_port = free_port()
            self.redis = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                 "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
            wait_port(self.redis_port)
        self.start()

    @property
    def proc(self):
        return self.procs[0]

    def start(self):
        self.log = open(self.dir / "broker.log", "ab")
        if BROKER == "aedes":
            self.procs = [subprocess.Popen(
                ["node", str(BROKERS_DIR / "aedes-node.js"), str(port), str(self.redis_port),
                 name], stdout=self.log, stderr=subprocess.STDOUT)
                for port, name in ((self.board_port, "a"), (self.port, "b"))]
            wait_port(self.board_port)
        else:
            self.procs = [subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=self.log,
                                           stderr=subprocess.STDOUT)]
        wait_port(self.port)

    def stop(self):
        for p in self.procs:
            stop(p)
        self.log.close()

    def close(self):
        """Stops the broker for good (and the cluster's redis-server)."""
        self.stop()
        if BROKER == "aedes":
            stop(self.redis)


class Board:
    """One mqrepld agent on its own prefix and temporary root."""

    def __init__(self, broker, tmp, *extra_args, wait=True, cwd=None):
        self.broker = broker
        self.root = tmp / "root"
        self.root.mkdir(exist_ok=True)
        self.prefix = "test/" + uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.extra_args = list(extra_args)
        self.cwd = cwd  # where mqrepld starts (relative paths in extra_args are from there)
        self.proc = None
        self.start(wait)

    def start(self, wait=True):
        self.log = open(self.tmp / "mqrepld.log", "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "mqrepld"), "-p", str(self.broker.board_port), "--prefix", self.prefix,
             "--root", str(self.root), "--rtc-file", str(self.tmp / "rtc"), "-v",
             *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.cwd,
            start_new_session=True,  # its own process group: a power cut takes all of it
        )
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # a board that never came up is not left behind
                raise

    def wait_ready(self, timeout=15.0, check=None):
        """Waits until the board answers an eval (and, with check, until check() holds)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.mqb("-T", "0.5", "eval", "1", check=False, timeout=30)
            if r.returncode == 0 and (check is None or self._holds(check)):
                return
            assert self.proc.poll() is None, f"mqrepld exited: {self.proc.returncode}"
            time.sleep(0.1)
        raise RuntimeError("mqrepld did not answer" + (" as expected" if check else ""))

    @staticmethod
    def _holds(check):
        # A board may reset between two commands (safe mode earning normal mode, say): a
        # command lost in the reset means "not yet", not a failure.
        try:
            return check()
        except AssertionError:
            return False

    def status(self):
        """The board's retained status (a dict), or None."""
        r = self.mqb("-T", "1", "--json", "status", check=False, text=True)
        return json.loads(r.stdout)["result"] if r.returncode == 0 else None

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM asks mqrepld (its launcher) to stop; SIGKILL is a power cut: the launcher
        and the agent it started go at once (an agent left behind would run on)."""
        if sig == signal.SIGKILL and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stop(self.proc, sig)
        self.log.close()

    def mqb_args(self, *args):
        return [str(BIN / "mqboard"), "-p", str(self.broker.port), "--prefix", self.prefix,
                *args]

    def mqb(self, *args, input=None, check=True, timeout=120, text=False):
        """Runs mqboard as a user would; returns the CompletedProcess (bytes unless text)."""
        r = subprocess.run(self.mqb_args(*args), input=input, capture_output=True,
                           timeout=timeout, text=text)
        if check and r.returncode != 0:
            raise AssertionError(f"mqboard {args} failed ({r.returncode}): {r.stderr!r}")
        return r

    def out(self, *args):
        return self.mqb(*args, text=True).stdout


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.close()


@pytest.fixture
def board(broker, tmp_path):
    b = Board(broker, tmp_path)
    yield b
    b.stop()


def read_vectors():
    """The golden vectors as dicts (see tests/vectors/messages.txt)."""
    rows = {}
    for line in VECTORS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        f = line.split("|")
        rows[f[0]] = {"topic": f[1], "payload": bytes.fromhex(f[2]), "kind": f[3],
                      "cmd": f[4], "id": f[5], "tail": f[6]}
    return rows
