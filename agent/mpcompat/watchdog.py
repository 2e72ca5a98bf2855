# watchdog: the board's watchdog and safe-mode switch, as the original MQRepl's watchdog
# module exposes it. The agent feeds it with an eval of watchdog.feed() that it publishes to
# its own command topic, so feeding proves the board can be controlled through the broker.
import _mqb


def feed():
    """Run by the loop-back message; not for applications (use require/ok)."""
    _mqb.wdt_feed()


def reset(mode="n"):
    """Resets the board: 'n' into normal mode, 'f' into safe mode, 's' soft (restart the
    interpreter), 'h' hard. True/False (the older API) mean normal/safe."""
    if mode is True:
        mode = "n"
    elif mode is False:
        mode = "f"
    if mode not in ("n", "f", "s", "h"):
        raise ValueError("mode must be 'n', 'f', 's' or 'h'")
    _mqb.reset(mode)


def require(name, seconds):
    """Registers an application health check: ok(name) must be called at least every
    `seconds`, or the watchdog stops being fed and the board resets."""
    _mqb.wdt_require(str(name), float(seconds))


def ok(name):
    _mqb.wdt_ok(str(name))


def status():
    """The watchdog's state as a dict (mode, fed, allok progress, checks)."""
    return _mqb.wdt_status()
