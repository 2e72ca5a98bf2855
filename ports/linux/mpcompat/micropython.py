# micropython: MicroPython's micropython module, as far as it means anything on CPython.


def const(x):
    return x


def opt_level(level=None):
    return 0


def alloc_emergency_exception_buf(size):
    pass


def mem_info(verbose=False):
    import resource
    print("max rss: %d kB" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def qstr_info(verbose=False):
    pass


def stack_use():
    return 0


def heap_lock():
    return 0


def heap_unlock():
    return 0


def kbd_intr(chr):
    pass


def schedule(func, arg):
    func(arg)
    return True
