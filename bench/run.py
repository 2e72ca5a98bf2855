#!/usr/bin/python3
"""The benchmark harness: mqboard/mqrepld next to the raw broker doing the same work, in the
same run, on a default mosquitto and on one with set_tcp_nodelay. Writes docs/benchmarks.md.

    bench/run.py            the full run (a few minutes), writes docs/benchmarks.md
    bench/run.py --quick    a smoke run with tiny sizes (the test suite runs it; no timing
                            is asserted anywhere), writes to --out or a temporary file
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("MQB_BIN_DIR", REPO / "build"))
MB = 1_000_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("broker did not start")


def stop(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


class Broker:
    def __init__(self, tmp, nodelay):
        self.port = free_port()
        conf = tmp / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence false\n" + ("set_tcp_nodelay true\n" if nodelay else ""))
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)


class Agent:
    def __init__(self, tmp, broker, name, *extra, env=None):
        self.env = env
        self.root = tmp / f"root-{name}"
        self.root.mkdir(exist_ok=True)
        self.prefix = f"bench/{name}"
        self.log = tmp / f"mqrepld-{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "mqrepld"), "-p", str(broker.port), "--prefix", self.prefix, "--root",
                 str(self.root), "--rtc-file", str(tmp / f"rtc-{name}"), *extra],
                stdout=log, stderr=log)
        self.port = broker.port
        for _ in range(100):
            if self.mqb("-T", "0.3", "eval", "1").returncode == 0:
                return
        raise RuntimeError("agent did not start: " + self.log.read_text()[-2000:])

    def args(self, *a):
        return [str(BIN / "mqboard"), "-q", "-p", str(self.port), "--prefix", self.prefix, *a]

    def mqb(self, *a):
        return subprocess.run(self.args(*a), capture_output=True, text=True, env=self.env)

    def peak_rss_kb(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0


def timed(argv, env=None):
    """Runs a command; returns (seconds, peak RSS of the process in kB)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.monotonic() - t0
    if status != 0:
        raise RuntimeError(f"{argv} failed: {p.stderr.read().decode()}")
    return secs, usage.ru_maxrss


def raw_stream(port, nbytes, msg):
    """Seconds for the raw clients to move nbytes, as a whole process like ours: start, two
    connections, the stream, disconnect."""
    return timed([str(BIN / "rawpipe"), "-p", str(port), "stream", str(nbytes), str(msg),
                  "16"])[0]


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def fmt(xs, unit=""):
    med, lo, hi = stats(xs)
    return f"{med:.1f}{unit} ({lo:.1f}-{hi:.1f})"


def bench_transfers(tmp, broker, agent, sizes, chunks, runs, rows):
    for size in sizes:
        for chunk in chunks:
            data = tmp / f"data-{size}"
            if not data.exists():
                data.write_bytes(os.urandom(int(size * MB)))
            ours_put, ours_get, raw = [], [], []
            for _ in range(runs):  # ours and the baseline alternate
                raw.append(raw_stream(broker.port, int(size * MB), chunk + 2))
                ours_put.append(timed(agent.args("--chunk", str(chunk), "put", str(data),
                                                 "bench.bin"))[0])
                ours_get.append(timed(agent.args("--chunk", str(chunk), "get", "bench.bin",
                                                 str(tmp / "back.bin")))[0])
            rate = lambda ts: [size / t for t in ts]
            raw_mbs = statistics.median(rate(raw))
            for what, ts in (("put", ours_put), ("get", ours_get)):
                mbs = rate(ts)
                rows.append((f"{what} {size:g} MB, {chunk} B chunks", fmt(mbs, " MB/s"),
                             fmt(rate(raw), " MB/s"),
                             f"{statistics.median(mbs) / raw_mbs:.2f}",
                             f"mqboard --chunk {chunk} {what} ..."))


def bench_rtt(broker, agent, count, rows):
    out = agent.mqb("--json", "ping", "-c", str(count)).stdout
    r = json.loads(out)["result"]
    raw = subprocess.run([str(BIN / "rawpipe"), "-p", str(broker.port), "rtt", str(count)],
                         capture_output=True, text=True, check=True).stdout.split()
    rows.append((f"eval round trip, {count} evals (median / p99)",
                 f"{r['median_ms']:.3f} / {r['p99_ms']:.3f} ms",
                 f"{float(raw[1]):.3f} / {float(raw[4]):.3f} ms",
                 f"{float(raw[1]) / r['median_ms']:.2f}", f"mqboard ping -c {count}"))
    # Start-up: whole processes, side by side with the floor (mosquitto_pub publishing one
    # message at QoS 1 to the same broker: connect, publish, PUBACK, disconnect), alternately.
    pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t",
           "bench/startup", "-m", "1"]
    cold, floor, ratios = [], [], []
    for _ in range(max(5, count // 20)):
        ours = timed(agent.args("eval", "1+1"))[0] * 1000
        base = timed(pub)[0] * 1000
        cold.append(ours)
        floor.append(base)
        ratios.append(ours / base)
    rows.append(("`mqboard eval 1+1`, whole process (raw: `mosquitto_pub -q 1`, one message)",
                 fmt(cold, " ms"), fmt(floor, " ms"), f"{statistics.median(ratios):.2f}",
                 "mqboard eval 1+1"))
    version = [timed([str(BIN / "mqboard"), "--version"])[0] * 1000 for _ in range(10)]
    rows.append(("`mqboard --version`, whole process", fmt(version, " ms"), "", "",
                 "mqboard --version"))


def bench_scaling(tmp, broker, agent, procs_list, agents_list, count, rows):
    for n in procs_list:
        t0 = time.monotonic()
        ps = [subprocess.Popen(agent.args("ping", "-c", str(count)), stdout=subprocess.DEVNULL)
              for _ in range(n)]
        for p in ps:
            p.wait()
        rate = n * count / (time.monotonic() - t0)
        rows.append((f"{n} mqboard processes, one agent", f"{rate:.0f} evals/s", "", "",
                     f"{n} x mqboard ping -c {count}"))
    for n in agents_list:
        agents = [Agent(tmp, broker, f"scale{n}-{i}-{broker.port}", "--wdt-timeout", "0")
                  for i in range(n)]
        t0 = time.monotonic()
        ps = [subprocess.Popen(a.args("ping", "-c", str(count)), stdout=subprocess.DEVNULL)
              for a in agents]
        for p in ps:
            p.wait()
        rate = n * count / (time.monotonic() - t0)
        for a in agents:
            stop(a.proc)
        rows.append((f"{n} agents on one broker, one mqboard each", f"{rate:.0f} evals/s", "",
                     "", f"{n} x mqboard ping -c {count}"))


def bench_memory(tmp, broker, sizes, rows):
    for size in sizes:
        a = Agent(tmp, broker, f"mem{size}-{broker.port}", "--wdt-timeout", "0")
        data = tmp / f"data-{size}"
        if not data.exists():
            data.write_bytes(os.urandom(int(size * MB)))
        # mqboard reports its own VmHWM: the rusage of a child forked from this harness would
        # count the harness's memory from before the exec.
        peak = lambda *cmd: json.loads(a.mqb("--json", *cmd).stdout)["peak_rss_kb"]
        tool = max(peak("put", str(data), "m.bin"), peak("get", "m.bin", str(tmp / "m.bin")))
        rows.append((f"peak RSS during {size:g} MB put+get", f"mqrepld {a.peak_rss_kb()} kB",
                     f"mqboard {tool} kB", "", "VmHWM of each"))
        stop(a.proc)


def bench_ota(tmp, broker, size_mb, runs, rows):
    a = Agent(tmp, broker, f"ota{broker.port}", "--slots", str(tmp / f"slots{broker.port}"))
    image = tmp / "image.bin"
    image.write_bytes(os.urandom(int(size_mb * MB)))
    ts = [timed(a.args("ota", str(image)))[0] * 1000 for _ in range(runs)]
    rows.append((f"ota of a {size_mb:g} MB image (incl. SHA-256 check)", fmt(ts, " ms"), "", "",
                 "mqboard ota IMAGE"))
    stop(a.proc)


def bench_signed(tmp, broker, plain, size, count, runs, rows):
    """Signed commands against the same agent build without keys, in the same run."""
    cfg = tmp / "signed-cfg"
    env = dict(os.environ, XDG_CONFIG_HOME=str(cfg))
    subprocess.run([str(BIN / "mqboard"), "key", "generate"], env=env, check=True,
                   capture_output=True)
    keys = tmp / "signed-keys"
    keys.mkdir(mode=0o700)
    (keys / "authorized_keys").write_text((cfg / "mqboard" / "id_mqb.pub").read_text())
    agent = Agent(tmp, broker, "signed", "--wdt-timeout", "0", "--keys", str(keys), env=env)
    try:
        pings = [json.loads(a.mqb("--json", "ping", "-c", str(count)).stdout)["result"]
                 ["median_ms"] for a in (agent, plain)]
        rows.append((f"eval round trip, {count} evals (median)", f"{pings[0]:.3f} ms",
                     f"{pings[1]:.3f} ms", f"+{pings[0] - pings[1]:.3f} ms",
                     f"mqboard ping -c {count}"))
        signed, unsigned = [], []
        for _ in range(max(5, count // 20)):
            signed.append(timed(agent.args("eval", "1+1"), env)[0] * 1000)
            unsigned.append(timed(plain.args("eval", "1+1"))[0] * 1000)
        rows.append(("`mqboard eval 1+1`, whole process", fmt(signed, " ms"),
                     fmt(unsigned, " ms"),
                     f"+{statistics.median(signed) - statistics.median(unsigned):.2f} ms",
                     "mqboard eval 1+1"))
        data = tmp / f"signed-{size}"
        data.write_bytes(os.urandom(int(size * MB)))
        for what in ("put", "get"):
            ts = {True: [], False: []}
            for _ in range(runs):
                for signed_run, a, e in ((True, agent, env), (False, plain, None)):
                    argv = (a.args("put", str(data), "bench-signed.bin") if what == "put" else
                            a.args("get", "bench-signed.bin", str(tmp / "signed-back.bin")))
                    ts[signed_run].append(timed(argv, e)[0])
            s_mbs = [size / t for t in ts[True]]
            u_mbs = [size / t for t in ts[False]]
            rows.append((f"{what} {size:g} MB", fmt(s_mbs, " MB/s"), fmt(u_mbs, " MB/s"),
                         f"{statistics.median(s_mbs) / statistics.median(u_mbs):.2f}",
                         f"mqboard {what} ..."))
    finally:
        stop(agent.proc)


def machine():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, {mosq}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    q = args.quick
    out = Path(args.out) if args.out else (
        Path(tempfile.mkstemp(suffix=".md")[1]) if q else REPO / "docs" / "benchmarks.md")
    sizes = [0.2] if q else [1, 10, 100]
    chunks = [65536] if q else [65536]
    sweep = [] if q else [1400, 4096, 16384]
    runs = 1 if q else 3
    sections = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for nodelay in (False, True):
            broker = Broker(tmp, nodelay)
            rows = []
            try:
                agent = Agent(tmp, broker, f"main{int(nodelay)}", "--wdt-timeout", "0")
                bench_transfers(tmp, broker, agent, sizes, chunks, runs, rows)
                if sweep:
                    bench_transfers(tmp, broker, agent, [5], sweep, runs, rows)
                bench_rtt(broker, agent, 20 if q else 1000, rows)
                bench_ota(tmp, broker, 0.2 if q else 2, runs, rows)
                bench_memory(tmp, broker, [0.1, 0.2] if q else [1, 100], rows)
                bench_scaling(tmp, broker, agent, [1, 2] if q else [1, 4, 16],
                              [1, 2] if q else [1, 10, 50], 10 if q else 200, rows)
                if nodelay:
                    signed_rows = []
                    bench_signed(tmp, broker, agent, 0.2 if q else 100, 20 if q else 1000,
                                 runs, signed_rows)
                stop(agent.proc)
            finally:
                stop(broker.proc)
            sections.append(("set_tcp_nodelay true" if nodelay else "default config", rows))
            print(f"done: broker {'nodelay' if nodelay else 'default'}", file=sys.stderr)
            for r in rows:
                print(" | ".join(r), file=sys.stderr)
    sections.append(("signed commands (`mqrepld --keys`) against the same agent without keys, "
                     "broker with set_tcp_nodelay true", signed_rows,
                     "| what | signed | unsigned | signed/unsigned | command |"))
    write(out, sections, q)
    print(out)


def write(out, sections, quick):
    lines = [
        "# Benchmarks", "",
        "Measured by `bench/run.py` (" + ("quick smoke run" if quick else
                                           "median, min-max over 3 runs") + ") on "
        + machine() + ", " + time.strftime("%Y-%m-%d") + ".",
        "Reproduce: `scripts/build && bench/run.py` (writes this file). `raw` is "
        "`bench/rawpipe`: two libmosquitto clients moving the same bytes in the same message "
        "size at QoS 1 through the same broker, with the same window of 16 messages and "
        "acknowledgements every 8, run alternately with ours. Transfers are whole `mqboard` "
        "processes (connect, caps, transfer, hash check), so small files pay the start-up.",
        ""]
    for title, rows, *header in sections:
        lines += [f"## Broker: {title}" if not header else f"## {title[0].upper()}{title[1:]}",
                  "", header[0] if header else "| what | ours | raw broker | ours/raw | command |",
                  "|---|---|---|---|---|"]
        lines += [f"| {' | '.join(r)} |" for r in rows]
        lines.append("")
    notes = REPO / "bench" / "notes.md"
    if notes.exists() and not quick:
        lines.append(notes.read_text())
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
