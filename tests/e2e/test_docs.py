"""Every example in the README and in the man page, run as written against a real board."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, Board, Broker
from test_recovery import newer_build

REPO = Path(__file__).resolve().parents[2]


def readme_tour():
    text = (REPO / "README.md").read_text()
    block = text.split("## A tour of mqboard", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [l for l in block.splitlines() if re.match(r"^(\w+=\S+ )*mqboard ", l)]


def man_examples():
    text = (REPO / "dist/mqboard.1").read_text()
    block = text.split(".SH EXAMPLES", 1)[1].split(".nf", 1)[1].split(".fi", 1)[0]
    return [l for l in block.strip().splitlines() if l.startswith("mqboard")]


def expected(line):
    """The output a README line promises in its comment, when it shows one."""
    m = re.search(r"#\s*(\d+|mqrepld)\s*$", line)
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    broker = Broker(tmp)
    board_dir = tmp / "board"
    board_dir.mkdir()
    b = Board(broker, board_dir, "--wdt-timeout", "2", "--allok", "60",
              "--slots", str(board_dir / "slots"))
    b.prefix_real = b.prefix
    work = tmp / "work"
    (work / "lib").mkdir(parents=True)
    (work / "lib/mylib.py").write_text("X = 1\n")
    (work / "app").mkdir()
    (work / "app/main.py").write_text("print('app')\n")
    (work / "main.py").write_text("print('main')\n")
    (work / "script.py").write_text("for i in range(3): print('line', i)\n")
    (work / "job.py").write_text("import time\nfor i in range(3):\n  print(i)\n  time.sleep(0.1)\n")
    (work / "src").mkdir()
    (work / "src/hello.py").write_text("print('hello from src')\n")
    (work / "board.spec").write_text("/lib:\n  lib: mylib.py\n")
    from test_tool import make_index
    make_index(work / "index")
    (work / "build").mkdir()
    image = newer_build(tmp)
    (work / "firmware.bin").write_bytes(image.read_bytes())
    (work / "build/firmware.bin").write_bytes(image.read_bytes())
    cfg = tmp / "config/mqboard"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text(f"port = {broker.port}\n[kitchen]\nprefix = {b.prefix}\n")
    env = dict(os.environ, MQBOARD_PORT=str(broker.port), MQBOARD_PREFIX=b.prefix,
               XDG_CONFIG_HOME=str(tmp / "config"), PATH=f"{BIN}:{os.environ['PATH']}")
    yield b, work, env
    b.stop()
    broker.close()


def run(line, work, env, prefix):
    # The man page's examples name the board esp32/kitchen: that is this board.
    line = line.replace("esp32/kitchen", prefix)
    return subprocess.run(["bash", "-o", "pipefail", "-ec", line], cwd=work, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_readme_tour(docs):
    b, work, env = docs
    lines = readme_tour()
    assert len(lines) > 20
    for line in lines:
        if line.startswith("mqboard view"):
            # It waits for the next log line: make one.
            p = subprocess.Popen(["bash", "-c", line], cwd=work, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            b.mqb("exec", "log.warning('hello from the docs')")
            out, err = p.communicate(timeout=20)
            assert p.returncode == 0 and "hello from the docs" in out, (line, err)
            continue
        r = run(line, work, env, b.prefix)
        assert r.returncode == 0, (line, r.stdout, r.stderr)
        want = expected(line)
        if want is not None:
            assert r.stdout.strip() == want, (line, r.stdout)


def test_man_page_examples(docs):
    b, work, env = docs
    lines = man_examples()
    assert len(lines) >= 4
    for line in lines:
        r = run(line, work, env, b.prefix)
        assert r.returncode == 0, (line, r.stdout, r.stderr)


def test_readme_plain_mqtt_example(docs):
    b, work, env = docs
    text = (REPO / "README.md").read_text()
    block = text.split("### Plain MQTT, no tool at all", 1)[1].split("```sh", 1)[1]
    block = block.split("```", 1)[0].strip().splitlines()
    sub_line, pub_line, want = block[0], block[1], block[2]
    env = dict(env, MQBOARD_PREFIX=b.prefix)  # as the demo's .demo/env sets them
    sub = subprocess.Popen(["bash", "-c", sub_line.rstrip("& ") + " -C 1"], env=env,
                           stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    subprocess.run(["bash", "-c", pub_line], check=True, env=env)
    out, _ = sub.communicate(timeout=20)
    assert out.strip() == want


def mqrepld_man_examples():
    text = (REPO / "dist" / "mqrepld.1").read_text()
    block = text.split(".SH EXAMPLES", 1)[1].split(".nf", 1)[1].split(".fi", 1)[0]
    return [line for line in block.strip().splitlines() if line.startswith("mqrepld ")]


def test_mqrepld_man_page_names_every_option():
    """mqrepld(1) exists (issue 20) and documents every option of mqrepld --help."""
    man = (REPO / "dist" / "mqrepld.1").read_text().replace("\\-", "-")
    out = subprocess.run([str(BIN / "mqrepld"), "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    import re
    options = set(re.findall(r"--[a-z][a-z-]+", out))
    assert len(options) > 20
    assert [o for o in options if o not in man and o != "--no-NAME"] == []


@pytest.mark.parametrize("source", ["readme", "man"])
def test_readme_agent_example(broker, tmp_path, source):
    """The README's and mqrepld(1)'s `mqrepld` line, with this test's broker port and a
    temporary root."""
    text = (REPO / "README.md").read_text()
    line = text.split("## Running the agent", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    if source == "man":
        lines = mqrepld_man_examples()
        assert len(lines) == 1
        line = lines[0]
    line = line.strip().replace("--port 1883", f"--port {broker.port}")
    line = line.replace("/srv/board", str(tmp_path / "board"))
    prefix = line.split("--prefix ")[1].split()[0] + "-" + tmp_path.name
    line = line.replace("--prefix linux/kitchen", f"--prefix {prefix}")
    (tmp_path / "board").mkdir()
    agent = subprocess.Popen(line.split() + ["--rtc-file", str(tmp_path / "rtc")],
                             env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mqb = [str(BIN / "mqboard"), "-p", str(broker.port), "--prefix", prefix, "eval", "6*7"]
        end = time.monotonic() + 15
        r = None
        while time.monotonic() < end:
            r = subprocess.run(mqb, capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.stdout == "42\n"
    finally:
        from conftest import stop
        stop(agent)
