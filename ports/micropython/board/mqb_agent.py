# The board side of mqboard on MicroPython: the MQTT connection (umqtt.simple), the mqb
# engine (C, the project's core/) for every command, evals in __main__ (what they see of the
# board: mqb_eval.py), the retained status with its last will, the watchdog fed only through
# the broker, the safe-mode switch in RTC memory, questions to the host, /remote's mount.
# The board's main.py starts it: import mqb_agent; mqb_agent.start()
import io
import sys
import time

import __main__
import mqb
import mqb_platform as plat
import mqb_settings as cfg
from mqb_eval import Log, Output, Watchdog, capture
from umqtt.simple import MQTTClient

try:
    import ubinascii as binascii
except ImportError:
    import binascii

try:
    import ujson as json
except ImportError:
    import json
try:
    import os
except ImportError:
    import uos as os
try:
    import socket
except ImportError:
    socket = None

# Every import the agent needs is made here, once: MicroPython searches the filesystem again
# at every import of a built-in module that files may extend (io, time, os, ...), and while a
# host mounts /remote that search is a round trip to it per path.

VERSION = "0.1.0"
AGENT = "mqboard-mp " + VERSION
INBOX_MAX = 16  # messages received while publishing, waiting for the engine
TICK_MS = 100  # how often a running eval's host is heard (busy_tick)
ASK_TIMEOUT_MS = 10000  # how long a question to a host waits for its answer
MOUNT_LEASE_MS = 15000  # a mount ends this long after its host's renewals stop (or lease S)
RESET_GRACE_MS = 2000  # a reset asked during an eval: how long the eval may hold it back
DISCOVER = "mqb/discover"  # every board answers with its status (boards discovery)
CAUSES = {1: "power-on", 2: "hard", 3: "watchdog", 5: "soft"}


def _setting(name):
    v = plat._env("MQB_" + name)
    d = getattr(cfg, name)
    if v is None:
        return d
    return int(v) if isinstance(d, int) and not isinstance(d, bool) else v


def _hex(n):
    return "".join("%02x" % b for b in os.urandom(n))


def _b64(data):
    return binascii.b2a_base64(data).strip().decode()


# The port's epoch in Unix seconds (2000 on most boards, 1970 on unix).
EPOCH = 946684800 if time.gmtime(0)[0] == 2000 else 0


def _unix_clock():
    """The board's clock in Unix seconds once it is set (ntptime, an RTC), else 0: before
    2024 it was never set, and command deadlines are not checked."""
    t = int(time.time()) + EPOCH
    return t if t > 1704067200 else 0


def _ticks():
    return time.ticks_ms()


class _OpSock:
    """umqtt.simple's socket, seen through: its wait_msg reads a packet's first byte, then
    calls setblocking(True). That byte holds a PUBLISH's retain flag, which umqtt.simple does
    not hand to the callback (and which we need: a retained command must never run)."""

    def __init__(self, sock):
        self.s, self.last, self.op = sock, None, 0

    def read(self, n):
        self.last = self.s.read(n)
        return self.last

    def setblocking(self, flag):
        if flag and self.last:
            self.op = self.last[0]
        self.s.setblocking(flag)

    def __getattr__(self, name):
        return getattr(self.s, name)


class _RetainClient(MQTTClient):
    """umqtt.simple's client that can say whether the message in hand was retained."""

    def connect(self, *args, **kwargs):
        r = super().connect(*args, **kwargs)
        self.sock = _OpSock(self.sock)
        return r

    def retained(self):
        return isinstance(self.sock, _OpSock) and self.sock.op & 0xF1 == 0x31


class Agent:
    def __init__(self):
        self.prefix = _setting("PREFIX")
        self.base = self.prefix + "/mqb/"
        self.discovered = time.ticks_ms()  # when the last discovery question came
        self.discover_tokens = 8  # answers it may still give now
        self.inbox = []
        self.current = None  # the id of the eval that runs
        self.followed = None  # ... when its requester follows it (a lease): it may be asked
        self.asked = 0  # questions asked of hosts (reply/ask), for their numbers
        self.reset_after = None  # (mode, eval id): reset once that eval's reply is out
        self.reset_asked = None  # when the host asked that reset during the eval
        self.lease_end = None  # when the running eval's lease ends (its host renews it)
        self.mount_id = None  # the host that serves /remote (mqb_remote), and until when
        self.mount_end = 0
        self.mount_stale = False  # its lease ended: unmount once no eval runs
        self.io = 0  # > 0 while the MQTT client is in use (busy_tick waits)
        self.timeout = _setting("WDT_TIMEOUT")
        self.allok = _setting("ALLOK")
        mem = plat.rtc_read()
        self.safe = self.timeout > 0 and mqb.boot_mode(mem)
        if self.timeout > 0:  # the next boot is normal only if this one earns it
            plat.rtc_write(mqb.rtc_word(False) + mem[4:])
        self.cause = plat.reset_cause()
        self.boot_id = _hex(8)
        self.feed_topic = self.base + "cmd/eval/F%s/" % _hex(8)
        self.last_feed = self.streak = _ticks()
        self.sent_feed = 0
        self.allok_done = False
        self.hw = plat.hw_watchdog(self.timeout)
        self.ota = plat.ota_target()
        self.engine = mqb.Engine(self.prefix, AGENT, plat.Platform(self.ota))
        # The firmware module raises KeyboardInterrupt in a silent eval; the .mpy cannot (a
        # native module reaches no scheduler): there only evals that print are interrupted.
        self.interrupt_eval = getattr(self.engine, "interrupt_eval", None) or (lambda: None)
        self.eval_armed = getattr(self.engine, "eval_armed", None) or (lambda armed: None)
        self.trust_init()
        self.log = Log(self)

    # ---- MQTT ----

    def status(self, online, resetting=False):
        st = {"status": "online" if online else "offline", "agent": AGENT,
              "mode": "safe" if self.safe else "normal",
              "boot_time": time.time(), "boot_id": self.boot_id,
              "reset_cause": CAUSES.get(self.cause, "unknown"),
              "clock_set": _unix_clock() > 0}
        if self.ota is not None:  # which slot runs, and whether this boot confirmed it
            st["slot"] = self.ota.slot()
            st["image"] = "valid" if self.allok_done else "pending"
        if resetting:
            st["resetting"] = True  # it comes back (docs/protocol.md)
        if self.pub is not None:
            st["key"] = _b64(self.pub)
            st["signed"] = self.signed
        text = json.dumps(st)
        if self.pub is not None:  # signed: the text, then its signature as the last member
            sig = self.engine.sign_status(self.base + "status", text)
            text = text[:-1] + ',"sig":"' + _b64(sig) + '"}'
        return text

    def connect(self):
        c = _RetainClient("mqb-" + self.boot_id, _setting("SERVER"), _setting("PORT"),
                       _setting("USER"), _setting("PASSWORD"), keepalive=30)
        c.set_callback(self.on_message)
        c.set_last_will(self.base + "status", self.status(False), retain=True, qos=1)
        c.connect()
        try:  # umqtt writes a publish in pieces: without Nagle they leave at once
            c.sock.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1),
                              1)
        except Exception:
            pass  # a port without the option: slower, not wrong
        self.client = c
        c.subscribe(self.base + "cmd/#", qos=1)
        c.subscribe(DISCOVER, qos=0)  # boards: who is there? (docs/protocol.md)
        c.publish(self.base + "status", self.status(True), retain=True, qos=1)
        self.connected = _ticks()

    def on_message(self, topic, msg):
        if self.client.retained():
            return  # a retained command would run at every boot (docs/protocol.md)
        if len(self.inbox) >= INBOX_MAX:
            return  # beyond the bound: a lost message fails its transfer, never the board
        self.inbox.append((topic.decode(), msg))

    def publish(self, topic, payload, qos=1, retain=False):
        self.io += 1  # busy_tick stays out of the client meanwhile
        try:
            self.client.publish(topic, payload, retain, qos)
        except KeyboardInterrupt:  # an interrupt landed inside the client: the stream may
            self.client.sock.close()  # be cut mid-packet, so the loop connects again
            raise
        finally:
            self.io -= 1

    def flush(self):
        while True:
            m = self.engine.take()
            if m is None:
                return
            self.publish(m[0], m[1])

    # ---- commands ----

    def handle(self, topic, payload):
        if topic == self.feed_topic:
            self.fed()
            return
        if topic.startswith(self.base + "cmd/ans/"):
            return  # an answer nobody waits for any more (its question timed out)
        if topic == DISCOVER:  # the status again, not retained: a burst of 8, then 2 a second
            now = time.ticks_ms()
            self.discover_tokens = min(8, self.discover_tokens +
                                       time.ticks_diff(now, self.discovered) / 500)
            self.discovered = now
            if self.discover_tokens >= 1:
                self.discover_tokens -= 1
                self.publish(self.base + "status", self.status(True))
            return
        self.engine.input(topic, payload, _unix_clock())
        self.flush()
        while True:
            ev = self.engine.event()
            if ev is None:
                break
            if ev[0] == "eval":
                self.run_eval(ev[1], bytes(ev[2]).decode())
            else:
                self.control(*ev)
            self.flush()

    def send_reply(self, eid, seq, last, data):
        """A reply/out message through the engine (signed when the board obeys keys)."""
        self.engine.reply(eid, seq, last, data)
        self.flush()

    def send_err(self, eid, text):
        self.engine.reply_err(eid, text)
        self.flush()

    def reply(self, eid, text, err=False):
        if err:
            self.send_err(eid, text)
        else:
            self.send_reply(eid, 0x7FFF, True, text.encode())

    def control(self, cmd, eid, tail, data):
        if cmd == "interrupt":
            self.reply(eid, "no eval running")
        elif cmd == "running":
            self.reply(eid, "1" if tail == self.current or self.renew_mount(tail, data) else "0")
        elif cmd == "mount":
            self.mount(eid, bytes(data).decode())
        elif cmd == "reset":
            mode = bytes(data).decode() or "n"
            if mode not in ("n", "f", "s", "h"):
                self.reply(eid, "reset: the mode is one of n, f, s, h", err=True)
                return
            self.reply(eid, "OK")
            self.reset(mode, True)
        elif cmd == "trust":
            self.trust(eid, bytes(data).decode())

    # ---- /remote (mqboard mount) ----

    def mount(self, eid, mode):
        """The host eid serves a directory as /remote (mode ro or rw) until off, or until
        MOUNT_LEASE_MS after its renewals stop (running naming its id)."""
        if mode not in ("ro", "rw", "off"):
            return self.reply(eid, "mount: the data is ro, rw or off", err=True)
        import mqb_remote
        if mode != "off":
            mqb_remote.mount(self, eid, mode == "rw")
            self.mount_id, self.mount_end = eid, time.ticks_add(_ticks(), MOUNT_LEASE_MS)
            self.log.info("/remote mounted (%s) by %s", mode, eid)
        elif eid == self.mount_id:
            self.unmount()
        self.reply(eid, "OK")

    def renew_mount(self, mid, data=b""):
        """A running query naming the mount: its host is there (data "lease S": for S s)."""
        if mid is None or mid != self.mount_id:
            return False
        ms = MOUNT_LEASE_MS
        if data[:6] == b"lease ":
            try:
                ms = min(int(bytes(data[6:])), 3600) * 1000
            except ValueError:
                pass
        self.mount_end = time.ticks_add(_ticks(), ms)
        return True

    def unmount(self):
        import mqb_remote
        mqb_remote.unmount()
        self.mount_id, self.mount_stale = None, False

    def mount_tick(self):
        """Ends a mount whose host went silent. Its questions fail at once from then on; the
        VFS itself is unmounted between evals, never from inside one of its calls (an import
        that walks sys.path must not see it change)."""
        if self.mount_id is not None and time.ticks_diff(self.mount_end, _ticks()) < 0:
            self.log.warning("/remote unmounted: its host %s is gone (lease ended)",
                             self.mount_id)
            self.mount_id = None
            self.mount_stale = True
        if self.mount_stale and self.current is None:
            self.unmount()

    # ---- keys (docs/security.md) ----

    def trust_init(self):
        """The board's key (made here at the first start) and the keys it obeys, from the
        KEYS directory; without the firmware's mbedTLS, or without KEYS, none."""
        self.pub, self.signed, self.keys = None, False, _setting("KEYS")
        if not self.keys or not hasattr(self.engine, "set_key"):
            return
        try:
            os.mkdir(self.keys)
        except OSError:
            pass
        try:
            with open(self.keys + "/board_key") as f:
                key = binascii.unhexlify(f.read().strip())
        except (OSError, ValueError):
            key = self.engine.keygen()
            with open(self.keys + "/board_key", "w") as f:
                f.write(binascii.hexlify(key).decode() + "\n")
        self.pub = self.engine.set_key(key, binascii.unhexlify(self.boot_id), self.keys)
        path = self.keys + "/authorized_keys"
        try:
            os.stat(path)
        except OSError:  # cut between trust's remove and rename (FAT): finish it
            try:
                os.rename(path + ".new", path)
            except OSError:
                pass
        try:
            with open(path) as f:
                for line in f:
                    if self.engine.authorize(line):
                        self.signed = True
        except OSError:
            pass

    def trust(self, eid, arg):
        """The trust command (signed, so only a key the board obeys gets here); its rules are
        the core's (engine.trust). The new key list is saved before it applies."""
        if not self.signed:
            return self.reply(eid, "not authorized: a board without authorized keys takes its "
                                   "first key on the board itself (its KEYS directory's "
                                   "authorized_keys)", err=True)
        text, err, lines = self.engine.trust(arg, False)
        if lines is not None:
            path = self.keys + "/authorized_keys"
            try:
                with open(path + ".new", "w") as f:
                    f.write(lines)
                try:
                    os.rename(path + ".new", path)
                except OSError:  # FAT: no rename over a file
                    os.remove(path)
                    os.rename(path + ".new", path)
            except OSError as e:
                return self.reply(eid, "cannot write %s: %s" % (path, e), err=True)
            self.engine.trust(arg, True)
        self.reply(eid, text, err=err)

    def poll_while_busy(self, eid, tick=False):
        """Serves what arrived for a running eval: a 'running' query, an interrupt naming it
        (or naming none), a reset (the eval is interrupted and the board resets when it
        ended), the watchdog's loop-back feed; everything else waits in the inbox. Called from
        the eval's output and input(), and from the scheduler (busy_tick) while it prints
        nothing: there an exception raised here would be lost, so the engine raises
        KeyboardInterrupt in the eval itself (interrupt_eval)."""
        self.io += 1
        try:
            stop = self._serve_busy(eid)
        finally:
            self.io -= 1
        if stop:
            if tick:
                self.interrupt_eval()
            else:
                raise KeyboardInterrupt

    def _serve_busy(self, eid):
        try:
            self.client.check_msg()
        except OSError:
            pass
        keep, stop = [], False
        for topic, payload in self.inbox:
            if topic == self.feed_topic:
                self.fed()
                continue
            parts = topic[len(self.base):].split("/")
            if stop or len(parts) < 3 or parts[0] != "cmd" or \
                    parts[1] not in ("interrupt", "running", "reset"):
                keep.append((topic, payload))
                continue
            data = self.engine.verify(topic, payload)  # signed, when the board has keys
            if data is None:
                continue  # not an operator's: dropped
            tail = "/".join(parts[3:])
            if parts[1] == "running" and self.renew_mount(tail, data):
                self.reply(parts[2], "1")
            elif parts[1] == "running":
                if tail == eid and data[:6] == b"lease ":  # its requester is there
                    self.followed = eid
                    try:
                        secs = min(int(bytes(data[6:])), 3600)
                        self.lease_end = time.ticks_add(_ticks(), secs * 1000)
                    except ValueError:
                        pass
                self.reply(parts[2], "1" if tail == eid else "0")
            elif parts[1] == "interrupt" and tail in ("", eid):
                self.reply(parts[2], "OK")
                stop = True
            elif parts[1] == "reset":
                mode = bytes(data).decode() or "n"
                if mode not in ("n", "f", "s", "h"):
                    self.reply(parts[2], "reset: the mode is one of n, f, s, h", err=True)
                    continue
                self.reply(parts[2], "OK")
                self.reset_after = (mode, eid)
                self.reset_asked = _ticks()
                stop = True
        self.inbox = keep
        return stop

    def busy_tick(self, _):
        """From the scheduler every TICK_MS while an eval runs (plat.ticker): the host is
        heard and the watchdog fed even while the eval prints nothing. A reset asked during
        the eval interrupts it again at every tick; an eval that keeps catching that is cut
        by a hard reset after RESET_GRACE_MS (a board's machine.reset(); not on the unix port,
        whose reset is the process's exit: there the watchdog is the last resort)."""
        if self.current is None or self.io:
            return  # between evals, or inside the MQTT client: the next tick
        self.watchdog_tick()
        if self.lease_end is not None and time.ticks_diff(self.lease_end, _ticks()) < 0:
            self.lease_end = None  # its requester went silent (protocol.md, lease)
            self.interrupt_eval()
            return
        if self.reset_asked is not None and self.reset_after[1] == self.current:
            if time.ticks_diff(_ticks(), self.reset_asked) > RESET_GRACE_MS and not plat.UNIX:
                self.reset(self.reset_after[0], True)
            self.interrupt_eval()
            return
        self.poll_while_busy(self.current, True)

    def ask(self, to, q, data=b"", cap=256, wait_ms=ASK_TIMEOUT_MS):
        """Asks the host behind id `to` (reply/ask/<to>: the JSON object q with its number,
        then data) and waits for the answer on cmd/ans/<to>/<n> (wait_ms, None: as long as
        it takes), serving interrupts and the watchdog meanwhile. Returns the answer's data
        (at most cap bytes; None after the wait, or for an answer its host did not sign)."""
        self.asked += 1
        q["n"] = self.asked
        if self.engine.publish_signed(self.base + "reply/ask/" + to,
                                      b"\xff\xff" + json.dumps(q).encode() +
                                      (b"\n" + data if data else b"")):
            raise OSError(27)  # EFBIG: over the engine's message size
        self.flush()
        want = "%scmd/ans/%s/%d" % (self.base, to, self.asked)
        end = time.ticks_add(_ticks(), wait_ms or 0)
        while wait_ms is None or time.ticks_diff(end, _ticks()) > 0:
            for i, (topic, payload) in enumerate(self.inbox):
                if topic == want:
                    del self.inbox[i]
                    data = self.engine.verify(topic, payload)  # None: not the host's
                    return None if data is None else data[:cap]
            if self.current is not None:
                self.poll_while_busy(self.current)  # an interrupt raises KeyboardInterrupt
            else:
                self.client.check_msg()
            self.watchdog_tick()
            self.mount_tick()
            if to != self.current and to != self.mount_id:
                return None  # the host behind it is gone (its mount's lease ended)
            time.sleep_ms(2)
        return None

    def ask_stdin(self, eid, out, n):
        """Keyboard input for the eval: asks the host that follows it. An eval nobody follows
        (the original tool's) reads end of file."""
        out.send_now()
        end = time.ticks_add(_ticks(), 2000)  # the lease travels right behind the eval
        while self.followed != eid and time.ticks_diff(end, _ticks()) > 0:
            self.poll_while_busy(eid)
            time.sleep_ms(5)
        if self.followed != eid:
            return b""
        # The host answers when its user typed: no limit but the lease (or an interrupt).
        data = self.ask(eid, {"op": "stdin", "len": n}, cap=n + 1, wait_ms=None)
        return data[1:] if data is not None and data[:1] == b"+" else b""

    def input_for(self, eid, out):
        """input() in __main__ while eval eid runs."""
        typed = [b""]  # what came and was not read yet

        def _input(prompt=""):
            if prompt:
                out.write(prompt)
            while typed[0].find(b"\n") < 0:
                data = self.ask_stdin(eid, out, 256)
                if not data:
                    break
                typed[0] += data
            if not typed[0]:
                raise EOFError
            i = typed[0].find(b"\n")
            i = len(typed[0]) if i < 0 else i
            line, typed[0] = typed[0][:i], typed[0][i + 1:]
            return line.decode()

        return _input

    def run_eval(self, eid, src):
        g = __main__.__dict__
        out = Output(self, eid)
        self.current = eid
        untick = plat.ticker(self.busy_tick, TICK_MS)
        saved = g.get("print")
        g["print"] = out.print
        g["input"] = self.input_for(eid, out)
        error = None
        restore = capture(out, g["input"])
        try:
            try:
                code, expr = compile(src, "<stdin>", "eval"), True
            except SyntaxError:
                code, expr = compile(src, "<stdin>", "exec"), False
            self.eval_armed(True)  # from here an interrupt may land (busy_tick)
            try:
                r = eval(code, g) if expr else exec(code, g)
            finally:
                self.eval_armed(False)  # and not after: none lands in our code
            if expr and r is not None:
                out.write(repr(r))
        except BaseException as e:  # KeyboardInterrupt and SystemExit too: the board stays
            s = io.StringIO()
            sys.print_exception(e, s)
            error = s.getvalue()
        finally:
            if untick is not None:
                untick()
            restore()
            if saved is None:
                g.pop("print", None)
            else:
                g["print"] = saved
            g.pop("input", None)
            self.current = self.followed = self.lease_end = None
        out.finish(error)
        if self.reset_after is not None and self.reset_after[1] == eid:
            self.reset(self.reset_after[0], True)

    # ---- watchdog, safe mode, resets ----

    def fed(self):
        now = _ticks()
        if time.ticks_diff(now, self.last_feed) > self.timeout * 500:
            self.streak = now  # a gap: continuous feeding starts again
        self.last_feed = now
        if self.hw is not None:
            self.hw.feed()
        if not self.allok_done and time.ticks_diff(now, self.streak) >= self.allok * 1000:
            plat.rtc_write(mqb.rtc_word(True) + plat.rtc_read()[4:])
            self.confirm()
            if self.safe:
                self.log.critical("controllable for %d s in safe mode: resetting", self.allok)
                self.reset("n", True)

    def confirm(self):
        """This boot proved itself (ALLOK s controllable): the firmware image is marked valid
        (no rollback), a board package on trial becomes the package (main.py)."""
        self.allok_done = True
        if self.ota is not None:
            self.ota.mark_valid()
            try:  # the image is confirmed: the status says so (ota --confirm waits for it)
                self.publish(self.base + "status", self.status(True), retain=True)
            except OSError:
                pass
        try:
            if plat.confirm_package(getattr(sys.modules[__name__], "__file__", "")):
                self.log.info("the board package update is confirmed: it is /mqb now")
        except OSError as e:
            self.log.error("confirming the board package update: %r", e)

    def watchdog_tick(self):
        if self.timeout <= 0:
            return
        now = _ticks()
        if time.ticks_diff(now, self.sent_feed) >= self.timeout * 250:
            self.sent_feed = now
            try:
                self.publish(self.feed_topic, b"\x80\x00watchdog.feed()")
            except OSError:
                pass
        if time.ticks_diff(now, self.last_feed) > self.timeout * 1000:
            plat.rtc_write(mqb.rtc_word(False) + plat.rtc_read()[4:])
            plat.reset("wdt")

    def reset(self, mode, via_broker):
        # Asked through the broker: the next boot is normal unless safe mode was asked.
        if via_broker or mode in ("n", "f"):
            plat.rtc_write(mqb.rtc_word(mode != "f") + plat.rtc_read()[4:])
        try:
            self.publish(self.base + "status", self.status(False, True), retain=True)
            self.client.disconnect()
        except OSError:
            pass
        plat.reset("soft" if mode == "s" else "hard")

    # ---- the loop ----

    def run_app(self):
        """The application: /app.py (normal mode) or /safemode/app.py, imported once; its
        poll(), if it has one, is called on every turn of the loop."""
        name = "/safemode/app.py" if self.safe else "/app.py"
        try:
            os.stat(name)
        except OSError:
            return None
        try:
            g = __main__.__dict__
            with open(name) as f:
                exec(f.read(), g)
            return g.get("poll")
        except Exception as e:
            self.log.critical("application stopped: %r", e)
            return None

    def loop(self):
        poll = self.run_app()
        while True:
            try:
                self.client.check_msg()
            except OSError:
                self.reconnect()
            while self.inbox:
                self.handle(*self.inbox.pop(0))
            while self.engine.pump():
                self.flush()
            self.flush()
            self.watchdog_tick()
            self.mount_tick()
            if self.timeout <= 0 and not self.allok_done and \
                    time.ticks_diff(_ticks(), self.connected) >= self.allok * 1000:
                self.confirm()  # no watchdog feeds to count: connected for ALLOK s
            if poll is not None:
                try:
                    poll()
                except Exception as e:
                    self.log.error("app poll: %r", e)
                    poll = None
            if not self.inbox:
                time.sleep_ms(2)

    def reconnect(self):
        delay = 250
        while True:
            try:
                self.connect()
                return
            except OSError:
                self.watchdog_tick()
                time.sleep_ms(delay)
                delay = min(delay * 2, 8000)


def start():
    wifi = _setting("WIFI")
    if wifi:
        import network
        w = network.WLAN(network.STA_IF)
        w.active(True)
        w.connect(*wifi)
        while not w.isconnected():
            time.sleep_ms(100)
    a = Agent()
    __main__.log = a.log
    __main__.watchdog = Watchdog(a)
    sys.modules["watchdog"] = __main__.watchdog
    a.reconnect()
    a.log.info("%s up (%s mode)", AGENT, "safe" if a.safe else "normal")
    a.loop()
