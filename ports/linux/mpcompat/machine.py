# machine: the parts of MicroPython's machine module that make sense on a Linux board:
# resets, reset cause, unique id, RTC memory (survives an agent restart, not a host reboot)
# and WDT (an application check of mqrepld's watchdog).
import os as _os
import time as _time
import _mqb

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset():
    """Hard reset: the agent restarts (after sending the replies under way)."""
    _mqb.reset("h")


def soft_reset():
    _mqb.reset("s")


def reset_cause():
    return _mqb.reset_cause()


def unique_id():
    try:
        with open("/etc/machine-id") as f:
            return bytes.fromhex(f.read().strip()[:12])
    except (OSError, ValueError):
        return _os.uname().nodename.encode()[:6]


def freq(*args):
    return 0


def idle():
    _time.sleep(0.001)


class RTC:
    """RTC memory: a small file that survives an agent restart but not a host reboot."""

    MEMORY_MAX = 2048

    def memory(self, data=None):
        path = _mqb.rtc_path()
        if data is None:
            try:
                with open(path, "rb") as f:
                    return f.read(self.MEMORY_MAX)
            except FileNotFoundError:
                return b""
        data = bytes(data)
        if len(data) > self.MEMORY_MAX:
            raise ValueError("RTC memory holds at most %d bytes" % self.MEMORY_MAX)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        _os.replace(path + ".tmp", path)

    def datetime(self, *args):
        t = _time.localtime()
        return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_wday, t.tm_hour, t.tm_min, t.tm_sec, 0)


class WDT:
    """A watchdog the application must feed within timeout ms, as on a MicroPython board;
    on mqrepld it is an application check: when overdue, the agent's watchdog stops being
    fed and resets the board."""

    _count = 0

    def __init__(self, id=0, timeout=5000):
        WDT._count += 1
        self._name = "machine.WDT%d" % WDT._count
        _mqb.wdt_require(self._name, timeout / 1000)

    def feed(self):
        _mqb.wdt_ok(self._name)
