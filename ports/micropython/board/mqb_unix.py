# Runs the board package on the MicroPython unix port as if it were a board (tests, trying it
# out): the board's filesystem is a LittleFS image in a host file (MQB_FS_IMAGE, 8 MiB,
# formatted on first use) mounted at "/", as on an ESP32. The folder this file is in plays the
# serial cable: at the first start its package is copied onto the board (/main.py, /mqb/,
# /lib/umqtt/), as mpremote would; from then on the board runs its own /main.py from its own
# filesystem, which is what updates over MQTT change. Without a package beside it (a firmware
# with the package frozen) the frozen one runs. Settings come from MQB_* variables (see
# mqb_settings.py); the process exits to reset (77 hard, 79 soft, 78 watchdog) and its
# launcher starts it again with MQB_RESET_CAUSE. Run: micropython mqb_unix.py
import os
import sys

try:  # the tests' esp32 stand-in, when it is beside this file: the firmware's, not files
    import esp32  # noqa: F401
    import machine  # noqa: F401
except ImportError:
    pass

BLOCK = 4096
HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
FIRMWARE = ("mqb_unix.py", "esp32.py", "machine.py")  # not the board's files


class FileBlockDev:
    """A block device over a host file, for os.VfsLfs2."""

    def __init__(self, path, blocks):
        try:
            self.f = open(path, "r+b")
        except OSError:
            self.f = open(path, "w+b")
            erased = b"\xff" * BLOCK
            for _ in range(blocks):
                self.f.write(erased)
            self.f.flush()
        self.blocks = blocks

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * BLOCK + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        # Written through at once (MicroPython's files are unbuffered): a process killed as a
        # power cut keeps what was written, as flash does. No fsync: that guards against the
        # host's crash, which no test emulates, and cost 90% of a put's time.
        self.f.seek(n * BLOCK + (off or 0))
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return BLOCK
        if op == 6:
            return 0
        return None


def package():
    """The board's files from the folder beside this one: [(board path, bytes)]."""
    files = []
    for name in os.listdir(HERE):
        if name in FIRMWARE or not (name.endswith(".py") or name.endswith(".mpy")):
            continue
        with open(HERE + "/" + name, "rb") as f:
            files.append(("/main.py" if name == "main.py" else "/mqb/" + name, f.read()))
    try:
        with open(HERE + "/umqtt/simple.py", "rb") as f:
            files.append(("/lib/umqtt/simple.py", f.read()))
    except OSError:
        pass
    return files


def install(files):
    for path, data in files:
        d = ""
        for part in path.split("/")[1:-1]:
            d += "/" + part
            try:
                os.mkdir(d)
            except OSError:
                pass
        with open(path, "wb") as f:
            f.write(data)


def main():
    files = package()  # read while the host's files are reachable
    dev = FileBlockDev(os.getenv("MQB_FS_IMAGE"), int(os.getenv("MQB_FS_BLOCKS") or 2048))
    try:
        vfs = os.VfsLfs2(dev)
    except OSError:
        os.VfsLfs2.mkfs(dev)
        vfs = os.VfsLfs2(dev)
    os.umount("/")
    os.mount(vfs, "/")
    os.chdir("/")
    sys.path[:] = ["", "/lib", ".frozen"]
    try:
        os.stat("/main.py")
    except OSError:
        install(files)  # the first start: the serial cable's copy
    have, files = bool(files), None  # the copy's bytes are not kept (heap)
    if have:
        with open("/main.py") as f:
            exec(f.read(), {"__name__": "__main__"})
    else:
        import mqb_agent
        mqb_agent.start()


main()
