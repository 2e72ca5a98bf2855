# ugc: MicroPython's gc module (what `import gc` gives in __main__): the host's collector,
# plus mem_free/mem_alloc over the process's memory, as a board would report its heap.
from gc import collect, enable, disable, isenabled  # noqa: F401


def _status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def mem_alloc():
    """Bytes in use: the agent's resident memory."""
    return _status("VmRSS:")


def mem_free():
    """Bytes available: the host's available memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def threshold(amount=None):
    return -1 if amount is None else None
