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


# The longest period a check may have (the watchdog counts in 32-bit milliseconds).
MAX_PERIOD = 4294967


def require(name, seconds):
    """Registers an application health check: ok(name) must be called at least every
    `seconds`, or the watchdog stops being fed and the board resets."""
    seconds = float(seconds)
    if not 0 < seconds <= MAX_PERIOD:
        raise ValueError("seconds must be > 0 and at most %d" % MAX_PERIOD)
    name = str(name)
    if not 0 < len(name.encode()) <= 31:
        raise ValueError("name must be 1 to 31 bytes")
    _mqb.wdt_require(name, seconds)


def ok(name):
    _mqb.wdt_ok(str(name))


def status():
    """The watchdog's state as a dict: enabled, mode, timeout and allok (s), fed_ago (s since
    the last accepted feed), allok_done, and checks {name: {period, ok_ago}}."""
    import json, time
    s = json.loads(_mqb.wdt_status())
    now = time.monotonic()
    if "last_feed" in s:
        s["fed_ago"] = round(now - s.pop("last_feed"), 3)
    for c in s.get("checks", {}).values():
        c["ok_ago"] = round(now - c.pop("last_ok"), 3)
    return s
