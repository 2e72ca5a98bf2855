# What an eval's code sees of the board on MicroPython: its output streamed to the host that
# asked (print everywhere, and the terminal where the firmware has os.dupterm), input() from
# that host's keyboard, the original board's `log` and `watchdog` objects. mqb_agent.py runs
# the evals; this is imported with it, at start.
import builtins

import mqb
from mqb_platform import IOBase

try:
    import os
except ImportError:
    import uos as os


class _TermStream(IOBase):
    """What the firmware writes to its terminal while an eval runs, for os.dupterm."""

    def __init__(self, out):
        self.out = out

    def write(self, data):
        self.out.write(bytes(data))
        return len(data)

    def readinto(self, buf):
        return None  # no keyboard here: input() comes from the host (reply/ask)

    def ioctl(self, op, arg):
        return 0


def capture(out, inp):
    """Sends all an eval prints to its host, not to the board's console, and takes input()
    from its host's keyboard: print and input are replaced in builtins (every module's, not
    only the eval's own); where the firmware has os.dupterm (ESP32, RP2, STM32) the terminal
    is duplicated too (sys.stdout.write, and tracebacks a module prints itself). sys.stdin
    stays the board's console. Returns the function that undoes it."""
    saved = (builtins.print, builtins.input)
    try:
        builtins.print, builtins.input = out.print, inp
    except (AttributeError, TypeError):
        saved = None  # a firmware whose builtins cannot be overridden: __main__'s only
    dupterm = getattr(os, "dupterm", None)
    old = dupterm(_TermStream(out), 1) if dupterm is not None else None

    def restore():
        if saved is not None:
            builtins.print, builtins.input = saved
        if dupterm is not None:
            dupterm(old, 1)
    return restore


class Output:
    """Captures an eval's output and sends it while the code runs: seq-numbered messages of
    up to CHUNK bytes, the last with the last flag (a single 0xFFFF message when it all fits).
    While code runs, it looks at the inbox: an interrupt naming this eval raises
    KeyboardInterrupt, a 'running' query is answered."""

    def __init__(self, agent, eid):
        self.a, self.id, self.buf, self.seq, self.calls = agent, eid, bytearray(), 0, 0

    def write(self, s):
        self.buf.extend(s.encode() if isinstance(s, str) else s)
        while len(self.buf) >= mqb.CHUNK:
            self._send(self.buf[: mqb.CHUNK], False)
            self.buf = self.buf[mqb.CHUNK:]
        self.calls += 1
        if self.calls % 8 == 0:
            self.a.poll_while_busy(self.id)
        return len(s)

    def print(self, *args, sep=" ", end="\n", file=None):
        if file is not None:
            file.write(sep.join(str(a) for a in args) + end)
        else:
            self.write(sep.join(str(a) for a in args) + end)

    def _send(self, data, last):
        self.a.send_reply(self.id, self.seq & 0x7FFF, last, data)
        self.seq += 1

    def send_now(self):
        """What is buffered goes out at once (the prompt of input())."""
        if self.buf:
            self._send(self.buf, False)
            self.buf = bytearray()

    def finish(self, error):
        if error is None and self.seq == 0 and len(self.buf) <= mqb.CHUNK:
            self.a.send_reply(self.id, 0x7FFF, True, self.buf)
            return
        if error is None or self.buf:
            self._send(self.buf, error is None)
        if error is not None:
            self.a.send_err(self.id, error)


class Log:
    """The original board's `log`: lines 'L message' on PREFIX/log."""

    def __init__(self, agent):
        self.a = agent

    def _line(self, letter, msg, *args):
        try:
            self.a.publish(self.a.prefix + "/log", "%s %s" % (letter, msg % args if args else msg),
                           qos=0)
        except Exception:
            pass

    def debug(self, m, *a):
        self._line("D", m, *a)

    def info(self, m, *a):
        self._line("I", m, *a)

    def warning(self, m, *a):
        self._line("W", m, *a)

    def error(self, m, *a):
        self._line("E", m, *a)

    def critical(self, m, *a):
        self._line("C", m, *a)

    def exc(self, e, m, *a):
        self._line("E", m + ": " + repr(e), *a)


class Watchdog:
    """The `watchdog` the original board's programs use: reset(mode)."""

    def __init__(self, agent):
        self.a = agent

    def feed(self):
        self.a.fed()

    def reset(self, mode="n"):
        mode = {True: "n", False: "f"}.get(mode, mode)
        self.a.reset_after = (mode, self.a.current)
        try:  # announced before the eval's last reply: its host waits for the new boot
            self.a.publish(self.a.base + "status", self.a.status(True, True), retain=True)
            if self.a.current is not None:
                self.a.publish(self.a.base + "reply/reset/" + self.a.current, mode)
        except OSError:
            pass
