#!/usr/bin/python3
"""The fleet benchmark: many boards on one mosquitto, driven by one mqboard.

    bench/fleet.py                      100 real mqrepld agents + 900 simulated boards
    bench/fleet.py --real R --sim S     other sizes
    bench/fleet.py --quick              a smoke run (3 + 20 boards; the test suite runs it)

Real boards are mqrepld agents (embedded CPython, A/B slots, a 15 s watchdog that earns normal mode in 5 s) on temporary
roots; simulated boards are bench/fleetsim: the core engine on a connection of its own per
board, with a status and last will, but no interpreter (eval only adds integers) and no
storage (a put is hashed and checked, then dropped). Measured, each a whole mqboard process:
`boards` (discovery), `eval 1+1` fanned out to every board, a 100 KB put to every board, and
a canary rollout of a new build (real boards only: --canary 2, waits until each update is
confirmed). Prints a Markdown table (and --out FILE writes it).
"""

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import BIN, free_port, wait_port  # bench/run.py: the same broker helpers



def many_files():
    """Raise our open-file limit (inherited by the broker and the simulator)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def newer_build(tmp):
    data = (BIN / "mqrepld").read_bytes()
    image = tmp / "mqrepld-0.1.1"
    image.write_bytes(data.replace(b"MQREPLD-VERSION=0.1.0\0", b"MQREPLD-VERSION=0.1.1\0"))
    return image


def timed(mqb, *args):
    t0 = time.monotonic()
    r = subprocess.run(mqb + list(args), capture_output=True, text=True, timeout=600)
    return time.monotonic() - t0, r


def summary_ok(r):
    """(ok, total) from fanout's summary line 'n ok, n failed, n offline ... (of N boards)'."""
    for line in reversed(r.stdout.splitlines()):
        if " ok, " in line and "(of " in line:
            return int(line.split()[0]), int(line.rsplit("(of ", 1)[1].split()[0])
    return 0, 0


def publish_statuses(port, n):
    """n retained statuses of boards that are gone (as a large broker keeps them)."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client()
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for i in range(n):
        info = c.publish(f"many/s{i:06d}/mqb/status",
                         '{"status":"offline","agent":"sim","boot_id":"%016x"}' % i, 1,
                         retain=True)
        if i % 500 == 499 or i == n - 1:
            info.wait_for_publish(120)  # the broker took them (bounded in flight)
    c.loop_stop()
    c.disconnect()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", type=int, default=100)
    ap.add_argument("--sim", type=int, default=900)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--rollout", type=int, default=20, help="real boards in the rollout")
    ap.add_argument("--statuses", type=int, default=100000,
                    help="retained statuses for the large `boards` row")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.quick:
        a.real, a.sim, a.rollout, a.statuses = 3, 20, 3, 2000
    a.rollout = min(a.rollout, a.real)
    many_files()
    tmp = Path(tempfile.mkdtemp(prefix="mqb-fleet-"))
    port = free_port()
    (tmp / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 10000\n")
    procs = []
    try:
        broker = subprocess.Popen(["mosquitto", "-c", str(tmp / "mosquitto.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(broker)
        wait_port(port)
        t0 = time.monotonic()
        for i in range(a.real):
            d = tmp / f"r{i:04d}"
            (d / "root").mkdir(parents=True)
            procs.append(subprocess.Popen(
                [str(BIN / "mqrepld"), "-p", str(port), "--prefix", f"fleet/r{i:04d}",
                 "--root", str(d / "root"), "--rtc-file", str(d / "rtc"), "--wdt-timeout", "15",
                 "--allok", "5", "--slots", str(d / "slots")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if a.sim > 0:
            sim = subprocess.Popen([str(BIN / "fleetsim"), str(port), "fleet", str(a.sim)],
                                   stdout=subprocess.PIPE, text=True)
            procs.append(sim)
            assert sim.stdout.readline().strip() == "ready", "fleetsim did not start"
        mqb = [str(BIN / "mqboard"), "-p", str(port)]
        total = a.real + a.sim
        while True:  # every board has said it is online
            _, r = timed(mqb, "--json", "boards", "fleet/#")
            if r.stdout.count('"online"') >= total or time.monotonic() - t0 > 300:
                break
            time.sleep(0.5)
        rows = []
        secs, r = timed(mqb, "boards", "fleet/#")
        found = sum(1 for l in r.stdout.splitlines() if " online " in l)
        rows.append(("`boards` (discovery)", f"{found}/{total} found", f"{secs:.2f} s",
                     "mqboard boards 'fleet/#'"))
        publish_statuses(port, a.statuses)
        timed(mqb, "boards", "many/#")  # the broker has them all
        secs, r = timed(mqb, "boards", "many/#")
        found = sum(1 for l in r.stdout.splitlines() if l.startswith("many/"))
        rows.append((f"`boards` over {a.statuses:,} retained statuses", f"{found}/{a.statuses} found",
                     f"{secs:.2f} s", "mqboard boards 'many/#'"))
        fan = ["--prefix", "fleet/+", "--parallel", str(a.parallel)]
        secs, r = timed(mqb, *fan, "eval", "1+1")
        ok, n = summary_ok(r)
        answers = sum(1 for l in r.stdout.splitlines() if l.endswith(": 2"))
        rows.append(("eval fanned out to all", f"{ok}/{n} ok, {answers} answers",
                     f"{secs:.2f} s", f"mqboard {' '.join(fan)} eval 1+1"))
        blob = tmp / "100k.bin"
        blob.write_bytes(os.urandom(100_000))
        secs, r = timed(mqb, *fan, "-q", "put", str(blob), "/blob.bin")
        ok, n = summary_ok(r)
        rows.append(("100 KB put to all (verified)", f"{ok}/{n} ok", f"{secs:.2f} s",
                     f"mqboard {' '.join(fan)} put 100k.bin /blob.bin"))
        cfg = tmp / "cfg/mqboard"
        cfg.mkdir(parents=True)
        (cfg / "config").write_text("[group rollout]\nmembers = " + " ".join(
            f"fleet/r{i:04d}" for i in range(a.rollout)) + "\n")
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "cfg")
        image = newer_build(tmp)
        secs, r = timed(mqb, "-b", "rollout", "--canary", "2", "--parallel", str(a.parallel),
                        "-q", "ota", str(image))
        updated = r.stdout.count("updated: slot")
        rows.append((f"canary rollout of a new build ({a.rollout} real boards)",
                     f"{updated}/{a.rollout} updated and confirmed", f"{secs:.2f} s",
                     "mqboard -b rollout --canary 2 ota mqrepld-0.1.1"))
        lines = [f"{a.real} real mqrepld agents + {a.sim} simulated boards (bench/fleetsim) on one "
                 f"mosquitto, {os.cpu_count()} cores; each row is one whole `mqboard` process.", "",
                 "| what | result | time | command |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(r)} |" for r in rows]
        text = "\n".join(lines) + "\n"
        print(text)
        if a.out:
            Path(a.out).write_text(text)
        bad = [r for r in rows if r[1].split("/")[0] != r[1].split("/")[1].split()[0]]
        return 1 if bad else 0
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
