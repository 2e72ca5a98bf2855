# The board-specific parts behind small objects, picked per port: files (atomic puts through a
# temporary file and rename on the board's VFS, recovered at start on FAT), SHA-256, the OTA partition, RTC memory (the
# safe-mode switch), the hardware watchdog, and resets. The mqb engine calls the first three.
import os
import sys

try:
    import hashlib
except ImportError:
    import uhashlib as hashlib
try:
    import io
    IOBase = io.IOBase
except (ImportError, AttributeError):
    IOBase = object

import mqb

try:
    import machine
except ImportError:
    machine = None
try:
    import micropython
except ImportError:
    micropython = None
try:
    import esp32
except ImportError:
    esp32 = None

# What the firmware offers decides, not its name: machine.RTC, machine.WDT, machine.reset and
# esp32.Partition where they exist (an ESP32; the tests' esp32 stand-in on the unix port).
# The unix port's machine module has no RTC: there (UNIX) RTC memory, resets and the A/B
# slots are emulated with host files and exit codes (mqb_unix.py). Its board filesystem is
# mounted at "/"; the host's files are reached through HOSTFS, a VfsPosix that is never
# mounted: no board listing, tree walk or rm can reach the host.
UNIX = not hasattr(machine, "RTC")
HOSTFS = os.VfsPosix() if UNIX and hasattr(os, "VfsPosix") else None


def _env(name, default=None):
    getenv = getattr(os, "getenv", None)
    v = getenv(name) if getenv else None
    return v if v else default


# Puts under way live in TMP_DIR (on the root filesystem, or at the top of the mounted
# filesystem that holds the target, e.g. /sd/.mqb-tmp): no user file is ever there.
TMP_DIR = ".mqb-tmp"
COMMIT = "/.mqb-tmp/commit"  # the commit record of a FAT replace (see Files.close)


def _fs_top(d):
    """"" for the root filesystem, else "/<name>" when d lies on another mounted filesystem
    (its statvfs differs from the root's), so that a temporary and its target share one."""
    top = "/" + d.strip("/").split("/")[0] if d.strip("/") else ""
    try:
        if top and os.statvfs(top) != os.statvfs("/"):
            return top
    except OSError:
        pass
    return ""


def recover():
    """At start, before anything else touches the files: finishes (or forgets) a replace that
    a reset or power cut interrupted, and removes the temporaries of puts that were under way
    (they can never be committed)."""
    try:
        with open(COMMIT) as c:
            rec = c.read()
        lines = rec.split("\n")
        if len(lines) == 3 and lines[2] == "" and lines[0] and lines[1]:
            tmp, target = lines[0], lines[1]
            try:
                os.stat(tmp)  # still there: the old file may be gone, the new one is whole
                try:
                    os.remove(target)
                except OSError:
                    pass
                os.rename(tmp, target)
            except OSError:
                pass  # the rename had happened
        os.remove(COMMIT)
    except OSError:
        pass  # no record: nothing was half replaced
    for top in [""] + ["/" + n for n in os.listdir("/")]:
        d = top + "/" + TMP_DIR
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            try:
                os.remove(d + "/" + n)
            except OSError:
                pass


class Files:
    """What the engine needs of the filesystem. A put writes a temporary file in TMP_DIR and
    renames it over the target only on commit, so a failed put never damages the old file.
    On LittleFS (and POSIX) the rename replaces the target atomically. FAT cannot rename over
    a file: there a commit record (COMMIT: the temporary's and the target's names) is written
    first, then the target removed and the temporary renamed; a power cut in between leaves
    the record, and recover() finishes the rename at the next start."""

    def __init__(self):
        self.tmp = {}
        self.n = 0
        recover()

    def open_read(self, path):
        st = os.stat(path)
        if st[0] & 0x4000:
            raise OSError(21)  # EISDIR
        return open(path, "rb"), st[6]

    def open_write(self, path):
        if path in ("", "/") or path.endswith("/"):
            raise OSError(21)
        try:
            if os.stat(path)[0] & 0x4000:
                raise OSError(21)
        except OSError as e:
            if e.args[0] != 2:
                raise
        d = path.rsplit("/", 1)[0] if "/" in path else ""
        self._makedirs(d)
        tmp_dir = _fs_top(d) + "/" + TMP_DIR
        self._makedirs(tmp_dir)
        self.n += 1
        tmp = "%s/put%d" % (tmp_dir, self.n)
        f = open(tmp, "wb")
        self.tmp[id(f)] = (tmp, path)
        return f

    def _makedirs(self, d):
        p = ""
        for part in d.split("/"):
            if not part:
                p = "/" if not p else p
                continue
            p = p + part if p.endswith("/") or not p else p + "/" + part
            try:
                os.mkdir(p)
            except OSError as e:
                if e.args[0] != 17:
                    raise

    def close(self, f, commit):
        tmp, target = self.tmp.pop(id(f), (None, None))
        f.close()
        if tmp is None:
            return
        if not commit:
            os.remove(tmp)
            return
        try:
            os.rename(tmp, target)  # LittleFS, POSIX: an atomic replace
            return
        except OSError as e:
            if e.args[0] != 17:  # EEXIST is FAT's answer; anything else fails the put
                os.remove(tmp)
                raise
        with open(COMMIT, "w") as c:
            c.write(tmp + "\n" + target + "\n")
        os.remove(target)
        os.rename(tmp, target)
        os.remove(COMMIT)

    def sha256(self):
        return hashlib.sha256()


class UnixOta:
    """An emulated A/B flash: slot0/slot1 files and a 'boot' file naming the slot to boot,
    in a host directory (MQB_OTA_DIR)."""

    def __init__(self, root):
        self.root = root

    def _running(self):
        try:
            with HOSTFS.open(self.root + "/running", "r") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def open(self):
        self.slot = 1 - self._running()
        return HOSTFS.open("%s/slot%d.new" % (self.root, self.slot), "wb")

    def close(self, f, commit):
        f.close()
        new = "%s/slot%d.new" % (self.root, self.slot)
        if not commit:
            HOSTFS.remove(new)
            return
        HOSTFS.rename(new, "%s/slot%d" % (self.root, self.slot))
        with HOSTFS.open(self.root + "/boot", "w") as b:
            b.write("%d new" % self.slot)

    def mark_valid(self):
        pass

    def slot(self):
        return self._running()


class Esp32Ota:
    """The next OTA partition of an ESP32 (esp32.Partition), written in 4096-byte blocks;
    set_boot() on commit; mark_app_valid_cancel_rollback() once the image proved itself."""

    def open(self):
        self.part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
        return _BlockWriter(self.part)

    def close(self, w, commit):
        w.flush()
        if commit:
            self.part.set_boot()  # the firmware checks the image first (OSError if invalid)

    def mark_valid(self):
        esp32.Partition.mark_app_valid_cancel_rollback()

    def slot(self):
        """The running app partition's number: 0 for ota_0, 1 for ota_1."""
        name = esp32.Partition(esp32.Partition.RUNNING).info()[4]
        return int(name[-1]) if name[-1:].isdigit() else 0


class _BlockWriter(IOBase):
    def __init__(self, part):
        self.part, self.buf, self.block = part, bytearray(), 0

    def write(self, data):
        self.buf.extend(data)
        while len(self.buf) >= 4096:
            self.part.writeblocks(self.block, self.buf[:4096])
            self.buf = self.buf[4096:]
            self.block += 1
        return len(data)

    def flush(self):
        if self.buf:
            self.part.writeblocks(self.block, self.buf + b"\xff" * (4096 - len(self.buf)))
            self.buf = bytearray()


class Platform(Files):
    """The object handed to mqb.Engine: files, SHA-256 and the OTA partition."""

    def __init__(self, ota):
        super().__init__()
        self.ota = ota

    def ota_open(self):
        if self.ota is None:
            raise OSError(95)  # not supported without an OTA target
        return self.ota.open()

    def ota_close(self, f, commit):
        self.ota.close(f, commit)


def rtc_read():
    if UNIX:
        try:
            with HOSTFS.open(_env("MQB_RTC_FILE", "/tmp/mqb.rtc"), "rb") as f:
                return f.read()
        except OSError:
            return b""
    return machine.RTC().memory()


def rtc_write(data):
    if UNIX:
        with HOSTFS.open(_env("MQB_RTC_FILE", "/tmp/mqb.rtc"), "wb") as f:
            f.write(data)
        return
    machine.RTC().memory(data)


def ota_target():
    if hasattr(esp32, "Partition"):
        return Esp32Ota()
    if UNIX:
        d = _env("MQB_OTA_DIR")
        return UnixOta(d) if d else None
    return None


def hw_watchdog(timeout_s):
    """A hardware watchdog fed only when the loop-back feed arrives (None on unix)."""
    if UNIX or not timeout_s:
        return None
    return machine.WDT(timeout=int(timeout_s * 1500))


def _rmtree(p):
    for e in os.ilistdir(p):
        q = p + "/" + e[0]
        _rmtree(q) if e[1] == 0x4000 else os.remove(q)
    os.rmdir(p)


def confirm_package(running_from):
    """The board package proved itself (controllable for ALLOK s). If it is an update on
    trial (main.py ran it from /mqb.new), it becomes /mqb, in an order that a power cut at any
    step leaves a package main.py runs: the trial mark goes first (an update that was
    confirmed is never rolled back), then /mqb becomes /mqb.old, /mqb.new becomes /mqb, and
    /mqb.old goes."""
    if not running_from.startswith("/mqb.new/"):
        return False
    os.remove("/mqb.new/.tried")
    for d in ("/mqb.old",):
        try:
            _rmtree(d)
        except OSError:
            pass
    try:
        os.rename("/mqb", "/mqb.old")
    except OSError:
        pass  # installed at the root, or cut after this step before
    os.rename("/mqb.new", "/mqb")
    try:
        _rmtree("/mqb.old")
    except OSError:
        pass
    return True


def ticker(fn, ms):
    """Runs fn(None) from the scheduler every ms milliseconds (in the main thread, between
    bytecodes and inside sleeps) until the function it returns is called: how the board hears
    its host while an eval runs that prints nothing. A machine.Timer on a board (a virtual one
    where the port has them, timer 0 on the ESP32); on the unix port, which has no
    machine.Timer, the mqb module's thread (ticker.c). None where the firmware has neither."""
    if hasattr(mqb, "ticker"):
        mqb.ticker(fn, ms)
        return lambda: mqb.ticker(None, 0)
    try:
        t = machine.Timer(0 if sys.platform == "esp32" else -1)
    except (AttributeError, ValueError, OSError):
        return None
    sched = micropython.schedule

    def tick(_):
        try:
            sched(fn, None)
        except RuntimeError:
            pass  # the scheduler's queue is full: the next tick

    t.init(period=ms, mode=machine.Timer.PERIODIC, callback=tick)
    return t.deinit


# Reset causes as machine.reset_cause() numbers them.
PWRON, HARD, WDT, SOFT = 1, 2, 3, 5


def reset_cause():
    if UNIX:
        return int(_env("MQB_RESET_CAUSE", "1"))
    return machine.reset_cause()


def reset(kind):
    """kind: 'hard', 'soft' or 'wdt'. On unix the process exits and its launcher restarts it
    (77 hard, 79 soft, 78 watchdog, as mqrepld's launcher)."""
    if UNIX:
        sys.exit({"hard": 77, "soft": 79, "wdt": 78}[kind])
    machine.soft_reset() if kind == "soft" else machine.reset()
