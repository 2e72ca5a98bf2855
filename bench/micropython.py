#!/usr/bin/python3
"""Measures the MicroPython port: RAM (heap of the whole board stack when idle, the engine
object, the smallest heap that survives a 1 MiB put and get), flash (object sizes of the core
at -Os for x86-64, Cortex-M0+ and Cortex-M4, and of the module as built), and speed (eval
round trip, 1 MiB put and get) against the unix-port board. Prints a Markdown table
(docs/micropython.md has the last one).

    MQB_MICROPYTHON=.../micropython MQB_MICROPYTHON_LIB=.../micropython-lib bench/micropython.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("MQB_BIN_DIR", REPO / "build"))
MP = os.environ.get("MQB_MICROPYTHON")
LIB = os.environ.get("MQB_MICROPYTHON_LIB")
sys.path.insert(0, str(REPO / "bench"))
from run import Broker, stop  # noqa: E402

CORE = ["err", "strbuf", "wire", "engine", "wdt", "boot", "auth"]
# The limits of ports/micropython/mqb/micropython.mk.
LIMITS = ["-DMQB_CHUNK_MAX=4096", "-DMQB_MAX_XFERS=2", "-DMQB_PATH_MAX=256", "-DMQB_WINDOW=4",
          "-DMQB_AUTH_KEYS_MAX=4", "-DMQB_AUTH_WINDOW=8", "-DMQB_AUTH_CHAINS=2"]


def core_size(cc, flags):
    """Total text+data of core/ compiled with cc at -Os, or None without that compiler."""
    if shutil.which(cc) is None:
        return None
    total = 0
    with tempfile.TemporaryDirectory() as d:
        for name in CORE:
            obj = Path(d) / (name + ".o")
            subprocess.run([cc, "-Os", "-std=c11", "-Wall", "-Wextra", "-Werror", *flags,
                            *LIMITS, "-I", str(REPO / "include"), "-c",
                            str(REPO / "core" / (name + ".c")), "-o", str(obj)], check=True)
            out = subprocess.run(["size", str(obj)], capture_output=True, text=True).stdout
            text, data = out.splitlines()[1].split()[:2]
            total += int(text) + int(data)
    return total


class Board:
    def __init__(self, broker, tmp, heap=None, keys=False, env=None, prefix=None, img=None,
                 frozen=False):
        """frozen: the board package from the firmware (ports/micropython/manifest.py), only
        the unix launcher from a file."""
        self.port, self.prefix = broker.port, prefix or "mp/" + uuid.uuid4().hex[:8]
        self.env = env
        pkg = tmp / ("pkg-frozen" if frozen else "pkg")
        pkg.mkdir(exist_ok=True)
        for f in (REPO / "ports/micropython/board").glob("*.py"):
            if not frozen or f.name == "mqb_unix.py":
                shutil.copy(f, pkg)
        if not frozen:
            (pkg / "umqtt").mkdir(exist_ok=True)
            shutil.copy(Path(LIB) / "micropython/umqtt.simple/umqtt/simple.py", pkg / "umqtt")
        self.img = img or tmp / ("fs-%s.img" % uuid.uuid4().hex[:6])
        env = dict(os.environ, MQB_SERVER="127.0.0.1", MQB_PORT=str(broker.port),
                   MQB_PREFIX=self.prefix, MQB_FS_IMAGE=str(self.img),
                   MQB_RTC_FILE=str(tmp / "rtc"), MQB_WDT_TIMEOUT="0",
                   MICROPYPATH=".frozen" if frozen else str(pkg),
                   MQB_KEYS="/.mqb-keys" if keys else "")
        args = [MP] + (["-X", "heapsize=%d" % heap] if heap else []) + [str(pkg / "mqb_unix.py")]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def mqb(self, *args, timeout=120):
        return subprocess.run([str(BIN / "mqboard"), "-p", str(self.port), "--prefix",
                               self.prefix, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env)

    def ready(self):
        for _ in range(100):
            if self.mqb("-T", "1", "eval", "1").returncode == 0:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False


def has_frozen_package():
    r = subprocess.run([MP, "-c", "import mqb_agent"], env=dict(os.environ, MICROPYPATH=".frozen"),
                       capture_output=True)
    return r.returncode == 0


def heap_idle(b):
    return json.loads(b.mqb("exec", "import gc\ngc.collect()\n"
                            "print([gc.mem_alloc(), gc.mem_free()])").stdout)[0]


def bench_signed(broker, tmp, rows, idle_plain, ping_plain):
    """The same board with a key enrolled: what checking signatures costs it."""
    cfg = tmp / "signed-cfg"
    env = dict(os.environ, XDG_CONFIG_HOME=str(cfg))
    subprocess.run([str(BIN / "mqboard"), "key", "generate"], env=env, check=True,
                   capture_output=True)
    line = (cfg / "mqboard" / "id_mqb.pub").read_text().strip()
    b = Board(broker, tmp, keys=True, env=env)
    try:
        assert b.ready(), "the board did not start"
        if '"key"' not in b.mqb("--json", "status").stdout:
            rows.append(("signed commands", "not measured: this firmware has no mbedTLS"))
            return
        b.mqb("exec", "f = open('/.mqb-keys/authorized_keys', 'w'); f.write(%r); f.close()"
              % line)
    finally:
        stop(b.proc)
    b = Board(broker, tmp, keys=True, env=env, prefix=b.prefix, img=b.img)  # now enrolled
    try:
        assert b.ready(), "the enrolled board did not start"
        idle = heap_idle(b)
        ping = json.loads(b.mqb("--json", "ping", "-c", "50").stdout)["result"]["median_ms"]
        rows.append(("heap in use, idle, with a key enrolled",
                     "%d B (+%d B)" % (idle, idle - idle_plain)))
        rows.append(("eval round trip, signed, median of 50 (verify + reply signature)",
                     "%.2f ms (+%.2f ms)" % (ping, ping - ping_plain)))
    finally:
        stop(b.proc)


def interrupt_latency(board, runs=20):
    """An eval that prints nothing (time.sleep(60)) interrupted, as mqboard does it: from the
    interrupt message to the eval's error reply, median over runs (the board's ticker)."""
    import threading
    import paho.mqtt.client as mqtt
    got, ev = {}, threading.Event()

    def on_message(c, u, m):
        got[m.topic.rsplit("/", 1)[-1]] = (time.monotonic(), m.topic)
        ev.set()

    c = mqtt.Client()
    c.on_message = on_message
    c.connect("127.0.0.1", board.port)
    c.subscribe(board.prefix + "/mqb/reply/#", 1)
    c.loop_start()
    base = board.prefix + "/mqb/cmd/"
    took = []
    try:
        time.sleep(0.3)
        for i in range(runs):
            eid = "Lat%05d" % i
            c.publish(base + "eval/" + eid, b"\x80\x00import time\ntime.sleep(60)", qos=1)
            time.sleep(0.3)  # asleep by now
            t0 = time.monotonic()
            c.publish(base + "interrupt/I%s/%s" % (eid, eid), b"\x80\x00", qos=1)
            end = t0 + 10
            while eid not in got and time.monotonic() < end:
                ev.wait(0.05)
                ev.clear()
            if eid not in got or "/err/" not in got[eid][1]:
                return None
            took.append(got[eid][0] - t0)
    finally:
        c.loop_stop()
        c.disconnect()
    took.sort()
    return took[len(took) // 2], took[-1]


def smallest_heap(broker, tmp, data, frozen):
    for heap in (32, 48, 64, 96, 128, 160, 192):
        b = Board(broker, tmp, heap * 1024, frozen=frozen)
        try:
            ok = b.ready() and timed(b, "put", str(data), "/x.bin") is not None and \
                timed(b, "get", "/x.bin", str(tmp / "back")) is not None
        finally:
            stop(b.proc)
        if ok:
            return heap * 1024
    return None


def timed(board, *args):
    t0 = time.monotonic()
    r = board.mqb("-q", *args)
    return time.monotonic() - t0 if r.returncode == 0 else None


def main():
    if not (MP and LIB):
        sys.exit("set MQB_MICROPYTHON and MQB_MICROPYTHON_LIB (docs/micropython.md)")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp, nodelay=True)
        data = tmp / "1mib"
        data.write_bytes(os.urandom(1 << 20))
        b = Board(broker, tmp)
        try:
            assert b.ready(), "the board did not start"
            idle = json.loads(b.mqb("exec", "import gc\ngc.collect()\n"
                                    "print([gc.mem_alloc(), gc.mem_free()])").stdout)
            eng = int(b.mqb("exec", "import mqb\nprint(mqb.ENGINE_BYTES)").stdout)
            rows.append(("heap in use, idle (whole stack, after gc.collect())",
                         "%d B" % idle[0]))
            rows.append(("mqb.Engine object (engine + its 4 KiB chunk buffer)", "%d B" % eng))
            ping = json.loads(b.mqb("--json", "ping", "-c", "50").stdout)["result"]
            rows.append(("eval round trip, median of 50", "%.2f ms" % ping["median_ms"]))
            ping_plain = ping["median_ms"]
            lat = interrupt_latency(b)
            rows.append(("interrupt of an eval that prints nothing (time.sleep(60)), median "
                         "and worst of 20", "%.0f ms, %.0f ms" % (lat[0] * 1000, lat[1] * 1000)
                         if lat else "not interrupted within 10 s"))
            put = timed(b, "put", str(data), "/x.bin")
            get = timed(b, "get", "/x.bin", str(tmp / "back"))
            rows.append(("put 1 MiB (verified)", "%.2f s, %.0f KiB/s" % (put, 1024 / put)))
            rows.append(("get 1 MiB (verified)", "%.2f s, %.0f KiB/s" % (get, 1024 / get)))
        finally:
            stop(b.proc)
        bench_signed(broker, tmp, rows, idle[0], ping_plain)
        if has_frozen_package():
            b = Board(broker, tmp, frozen=True)
            try:
                assert b.ready(), "the board with the frozen package did not start"
                rows.append(("heap in use, idle, the board package frozen into the firmware "
                             "(as on a microcontroller)", "%d B" % heap_idle(b)))
            finally:
                stop(b.proc)
        else:
            rows.append(("heap in use, idle, the board package frozen", "not measured: this "
                         "firmware was built without ports/micropython/manifest.py"))
        for frozen in (False, True) if has_frozen_package() else (False,):
            smallest = smallest_heap(broker, tmp, data, frozen)
            rows.append(("smallest heap (-X heapsize) that does a 1 MiB put and get" +
                         (", package frozen" if frozen else ""),
                         "%d KiB" % (smallest // 1024) if smallest else "over 192 KiB"))
        stop(broker.proc)
    for cc, flags, what in (("gcc", [], "x86-64"),
                            ("arm-none-eabi-gcc", ["-mcpu=cortex-m0plus", "-mthumb"],
                             "Cortex-M0+"),
                            ("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb"], "Cortex-M4")):
        n = core_size(cc, flags)
        rows.append(("core/ at -Os, %s (text+data)" % what, "%d B" % n if n else "no compiler"))
    mod = Path(MP).parent / "mqb" / "modmqb.o"
    if mod.exists():
        out = subprocess.run(["size", str(mod)], capture_output=True, text=True).stdout
        text, data_ = out.splitlines()[1].split()[:2]
        rows.append(("modmqb.o as built in the port (text+data)", "%d B" % (int(text) + int(data_))))
    mpy = os.environ.get("MQB_MPY")
    if mpy and Path(mpy).exists():
        rows.append(("mqb.mpy, the native module (MQB_MPY)", "%d B" % Path(mpy).stat().st_size))
    print("| what | measured |\n|---|---|")
    for what, v in rows:
        print("| %s | %s |" % (what, v))


if __name__ == "__main__":
    main()
