# A stand-in for the ESP32 port's esp32 module on MicroPython's unix port, for the tests: the
# esp32.Partition API the board package uses (RUNNING, BOOT, info, get_next_update,
# readblocks/writeblocks/ioctl with flash semantics, set_boot, mark_app_valid_cancel_rollback)
# over host files in MQB_ESP32_DIR: ota_0 and ota_1 (the app partitions) and otadata (the
# partition to boot and each one's state, as ESP-IDF's otadata holds them). The bootloader is
# the test's launcher (Esp32Board in test_micropython.py), which reads otadata at every start.
import os

_HOST = os.VfsPosix()  # made before the board's filesystem is mounted at "/"
_DIR = os.getenv("MQB_ESP32_DIR")
BLOCK = 4096
SLOTS = ("ota_0", "ota_1")
SLOT_BLOCKS = 256  # 1 MiB per app partition
ESP_IMAGE_MAGIC = 0xE9
ESP_ERR_OTA_VALIDATE_FAILED = 0x1503


def otadata():
    """{"boot": name, "ota_0": state, "ota_1": state}; states as ESP-IDF's: new,
    pending_verify, valid, invalid, aborted."""
    d = {}
    with _HOST.open(_DIR + "/otadata", "r") as f:
        for line in f.read().split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                d[k] = v
    return d


def write_otadata(d):
    with _HOST.open(_DIR + "/otadata.new", "w") as f:
        f.write("".join("%s=%s\n" % kv for kv in d.items()))
    _HOST.rename(_DIR + "/otadata.new", _DIR + "/otadata")  # otadata's two sectors: atomic


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0

    def __init__(self, id):
        if id == Partition.RUNNING:
            self.name = os.getenv("MQB_ESP32_RUNNING")
        elif id == Partition.BOOT:
            self.name = otadata()["boot"]
        elif id in SLOTS:
            self.name = id
        else:
            raise ValueError("partition not found")

    def info(self):
        i = SLOTS.index(self.name)
        return (0, 0x10 + i, 0x10000 + i * SLOT_BLOCKS * BLOCK, SLOT_BLOCKS * BLOCK, self.name,
                False)

    def get_next_update(self):
        return Partition(SLOTS[1 - SLOTS.index(self.name)])

    def _path(self):
        return _DIR + "/" + self.name

    def readblocks(self, n, buf, off=0):
        with _HOST.open(self._path(), "rb") as f:
            f.seek(n * BLOCK + off)
            got = f.read(len(buf))
        buf[: len(got)] = got
        for i in range(len(got), len(buf)):
            buf[i] = 0xFF

    def writeblocks(self, n, buf, off=None):
        """Without an offset the blocks are erased first, as the port's writeblocks does;
        with one, a program: it can only clear bits."""
        if n < 0 or (n * BLOCK + (off or 0) + len(buf)) > SLOT_BLOCKS * BLOCK:
            raise OSError(22)
        with _HOST.open(self._path(), "r+b") as f:
            f.seek(n * BLOCK + (off or 0))
            if off is None:
                f.write(buf)
                return
            old = f.read(len(buf))
            f.seek(n * BLOCK + off)
            f.write(bytes(a & b for a, b in zip(old, buf)))

    def ioctl(self, op, arg):
        if op == 4:
            return SLOT_BLOCKS
        if op == 5:
            return BLOCK
        if op == 6:
            self.writeblocks(arg, b"\xff" * BLOCK)
            return 0
        return None

    def set_boot(self):
        """Boots this partition next, after the firmware's check of the image (its first
        byte is the ESP image magic here): an invalid image is refused, otadata unchanged."""
        with _HOST.open(self._path(), "rb") as f:
            if f.read(1) != bytes([ESP_IMAGE_MAGIC]):
                raise OSError(-ESP_ERR_OTA_VALIDATE_FAILED)
        d = otadata()
        d["boot"] = self.name
        d[self.name] = "new"
        write_otadata(d)

    @staticmethod
    def mark_app_valid_cancel_rollback():
        d = otadata()
        d[os.getenv("MQB_ESP32_RUNNING")] = "valid"
        write_otadata(d)
