# utime: MicroPython's time module: CPython's time plus the ticks functions.
from time import *  # noqa: F401,F403
import time as _time

_PERIOD = 1 << 30


def ticks_ms():
    return int(_time.monotonic() * 1000) & (_PERIOD - 1)


def ticks_us():
    return int(_time.monotonic() * 1000000) & (_PERIOD - 1)


def ticks_cpu():
    return ticks_us()


def ticks_add(ticks, delta):
    return (ticks + delta) & (_PERIOD - 1)


def ticks_diff(end, start):
    return ((end - start + _PERIOD // 2) & (_PERIOD - 1)) - _PERIOD // 2


def sleep_ms(ms):
    _time.sleep(ms / 1000)


def sleep_us(us):
    _time.sleep(us / 1000000)
