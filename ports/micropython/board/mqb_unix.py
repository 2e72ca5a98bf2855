# Runs the board package on the MicroPython unix port as if it were a board (tests, trying it
# out): the board's filesystem is a LittleFS image in a host file (MQB_FS_IMAGE, 8 MiB,
# formatted on first use) mounted at "/", as on an ESP32. Settings come from MQB_* variables
# (see mqb_settings.py); the process exits to reset (77 hard, 79 soft, 78 watchdog) and its
# launcher starts it again with MQB_RESET_CAUSE. Run: micropython mqb_unix.py
import os
import sys

import mqb_agent  # and everything it imports, while the host's files are still reachable
import mqb_platform
import mqb_remote  # noqa: F401 (a board imports it from its filesystem at the first mount)
import umqtt.simple  # noqa: F401
import io  # noqa: F401

BLOCK = 4096


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


def mount():
    dev = FileBlockDev(os.getenv("MQB_FS_IMAGE"), int(os.getenv("MQB_FS_BLOCKS") or 2048))
    try:
        vfs = os.VfsLfs2(dev)
    except OSError:
        os.VfsLfs2.mkfs(dev)
        vfs = os.VfsLfs2(dev)
    mqb_platform.HOSTFS = os.VfsPosix()  # the emulated RTC memory and flash: never mounted
    os.umount("/")
    os.mount(vfs, "/")
    os.chdir("/")
    sys.path[:] = ["", "/lib", ".frozen"]


mount()
mqb_agent.start()
