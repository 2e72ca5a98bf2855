# A stand-in for an ESP32's machine module on MicroPython's unix port, for the tests: RTC memory
# (a host file that the test's launcher clears at power-on only: it survives soft, hard and
# watchdog resets), the hardware watchdog (WDT: feed() writes its deadline to a host file, and
# the launcher kills the process once it passes, whatever the interpreter is doing), reset,
# soft_reset (exits for the launcher: 77, 79) and reset_cause (the launcher's). The rest is the
# unix port's own machine module.
import os
import sys
import time

from umachine import *  # noqa: F401,F403 (the built-in module this one extends)

_HOST = os.VfsPosix()  # made before the board's filesystem is mounted at "/"
_DIR = os.getenv("MQB_ESP32_DIR")
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
RTC_MEMORY_MAX = 2048  # the ESP32 port's MICROPY_HW_RTC_USER_MEM_MAX


class RTC:
    def memory(self, data=None):
        if data is None:
            try:
                with _HOST.open(_DIR + "/rtc_memory", "rb") as f:
                    return f.read()
            except OSError:
                return b""
        if len(data) > RTC_MEMORY_MAX:
            raise ValueError("buffer too long")
        with _HOST.open(_DIR + "/rtc_memory", "wb") as f:
            f.write(data)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feed()

    def feed(self):
        with _HOST.open(_DIR + "/wdt.new", "w") as f:
            f.write("%.3f" % (time.time() + self.timeout / 1000))
        _HOST.rename(_DIR + "/wdt.new", _DIR + "/wdt")


def reset():
    sys.exit(77)


def soft_reset():
    sys.exit(79)


def reset_cause():
    return int(os.getenv("MQB_RESET_CAUSE") or PWRON_RESET)
