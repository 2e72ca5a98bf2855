# uos: MicroPython's os module, over the board's filesystem (mqrepld's --root) seen as "/".
import os as _os
import posixpath as _pp
import builtins as _builtins
import _mqb

_ROOT = _mqb.root()
sep = "/"


def getcwd():
    cwd = _os.getcwd()
    if cwd == _ROOT:
        return "/"
    if cwd.startswith(_ROOT + "/"):
        return cwd[len(_ROOT):]
    return cwd


def host_path(path):
    """The host path of a board path: absolute board paths start at the board root."""
    if isinstance(path, bytes):
        path = path.decode()
    path = str(path)
    if not path.startswith("/"):
        path = _pp.join(getcwd(), path)
    path = "/" + _pp.normpath(path).lstrip("/")  # "/../x" is "/x", as at a real root
    return _ROOT if path == "/" else _ROOT + path


def board_open(file, mode="r", *args, **kwargs):
    """open() with board paths (installed as __main__.open)."""
    if isinstance(file, (str, bytes)):
        file = host_path(file)
    return _builtins.open(file, mode, *args, **kwargs)


def chdir(path):
    _os.chdir(host_path(path))


def listdir(path="."):
    return _os.listdir(host_path(path))


def ilistdir(path="."):
    """Yields (name, type, inode, size): type 0x4000 for directories, 0x8000 for files."""
    for entry in _os.scandir(host_path(path)):
        try:
            is_dir = entry.is_dir()
            size = 0 if is_dir else entry.stat().st_size
        except OSError:
            is_dir, size = False, 0
        yield (entry.name, 0x4000 if is_dir else 0x8000, 0, size)


def stat(path):
    s = _os.stat(host_path(path))
    return (s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid, s.st_gid, s.st_size,
            int(s.st_atime), int(s.st_mtime), int(s.st_ctime))


def statvfs(path):
    v = _os.statvfs(host_path(path))
    return (v.f_bsize, v.f_frsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree,
            v.f_favail, v.f_flag, v.f_namemax)


def mkdir(path):
    _os.mkdir(host_path(path))


def rmdir(path):
    _os.rmdir(host_path(path))


def remove(path):
    _os.remove(host_path(path))


unlink = remove


def rename(old, new):
    _os.rename(host_path(old), host_path(new))


def sync():
    _os.sync()


def urandom(n):
    return _os.urandom(n)


def dupterm(stream=None, index=0):
    return None


class _Uname(tuple):
    sysname = property(lambda self: self[0])
    nodename = property(lambda self: self[1])
    release = property(lambda self: self[2])
    version = property(lambda self: self[3])
    machine = property(lambda self: self[4])


def uname():
    u = _os.uname()
    v = _mqb.version()
    return _Uname(("mqrepld", u.nodename, v, "mqrepld %s on %s %s" % (v, u.sysname, u.release),
                   u.machine))
