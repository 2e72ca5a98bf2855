#!/usr/bin/python3
"""A distant broker: a TCP proxy that delays every chunk by DELAY ms each way (default 25), in
front of a local mosquitto and mqrepld. Measures `mqboard eval 1+1` (whole process: connect,
subscribe, the eval) in round trips, next to the floor in the same run: a raw client that
connects and makes one QoS 1 request (mosquitto_pub -q 1); and the same command to a board that
obeys signed commands only (mqrepld --keys), whose OpenSSL set-up the round trips should hide.

    bench/distant.py [DELAY_MS] [RUNS]
"""

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BIN, Agent, Broker, free_port, stop  # noqa: E402


def proxy(listen, target, delay):
    """Every chunk leaves DELAY after it arrived (chunks in flight overlap, as on a wire)."""
    async def pipe(reader, writer):
        q = asyncio.Queue()

        async def read():
            while True:
                data = await reader.read(65536)
                await q.put((time.monotonic() + delay, data))
                if not data:
                    return

        task = asyncio.ensure_future(read())
        try:
            while True:
                due, data = await q.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            task.cancel()
            writer.close()

    async def handle(r, w):
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            w.close()
            return
        await asyncio.gather(pipe(r, tw), pipe(tr, w))

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", listen)
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    time.sleep(0.3)


def timed(argv, runs, env=None):
    ts = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        ts.append(time.monotonic() - t0)
    return statistics.median(ts)


def main():
    delay = float(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.025
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp, nodelay=True)
        agent = Agent(tmp, broker, "distant")
        port = free_port()
        proxy(port, broker.port, delay)
        rtt = 2 * delay
        ours = timed([str(BIN / "mqboard"), "-p", str(port), "--prefix", agent.prefix, "eval",
                      "1+1"], runs)
        floor = timed(["mosquitto_pub", "-p", str(port), "-q", "1", "-t", "x", "-m", "1"], runs)
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "cfg"))
        subprocess.run([str(BIN / "mqboard"), "key", "generate"], env=env, check=True,
                       capture_output=True)
        keys = tmp / "keys"
        keys.mkdir(mode=0o700)
        (keys / "authorized_keys").write_text((tmp / "cfg/mqboard/id_mqb.pub").read_text())
        signed = Agent(tmp, broker, "distant-signed", "--keys", str(keys), env=env)
        argv = [str(BIN / "mqboard"), "-p", str(port), "--prefix", signed.prefix, "eval", "1+1"]
        subprocess.run(argv, check=True, capture_output=True, env=env)  # records its key
        ours_signed = timed(argv, runs, env)
        print(f"| round trip (proxy) | {rtt * 1000:.0f} ms |")
        print(f"| mqboard eval 1+1 | {ours * 1000:.0f} ms = {ours / rtt:.1f} round trips |")
        print(f"| floor: connect + one QoS 1 request (mosquitto_pub -q 1) | "
              f"{floor * 1000:.0f} ms = {floor / rtt:.1f} round trips |")
        print(f"| mqboard eval 1+1, signed (mqrepld --keys) | {ours_signed * 1000:.0f} ms = "
              f"{ours_signed / rtt:.1f} round trips |")
        stop(signed.proc)
        stop(agent.proc)
        stop(broker.proc)


if __name__ == "__main__":
    main()
