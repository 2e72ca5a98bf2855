# uos: MicroPython's os module, over the board's filesystem (mqrepld's --root) seen as "/".
# Board paths never leave the root: ".." stops at "/", a symlink is followed only when its
# target is beneath the root, and tree walks never follow one (ilistdir and stat show a
# symlink as a file of its own, so that rm -r removes the link, not what it points to).
import errno as _errno
import os as _os
import posixpath as _pp
import builtins as _builtins
import _mqb
import _remote

_ROOT = _mqb.root()
_REAL_ROOT = _os.path.realpath(_ROOT)
_TMP_DIR = ".mqb-tmp"  # the agent's temporary files (ports/linux/fs.h): hidden, not writable
sep = "/"


_remote_cwd = [None]  # (mount id, board path) while the working directory is in /remote


def getcwd():
    rc = _remote_cwd[0]
    if rc is not None and _mqb.mount_id() == rc[0]:
        return rc[1]
    _remote_cwd[0] = None  # that mount ended: back to the board's own directory
    cwd = _os.getcwd()
    if cwd == _ROOT:
        return "/"
    if cwd.startswith(_ROOT + "/"):
        return cwd[len(_ROOT):]
    return cwd


def _beneath(real):
    return real == _REAL_ROOT or real.startswith(_REAL_ROOT.rstrip("/") + "/")


def _board_abs(path):
    if isinstance(path, bytes):
        path = path.decode()
    path = str(path)
    if not path.startswith("/"):
        path = _pp.join(getcwd(), path)
    return "/" + _pp.normpath(path).lstrip("/")  # "/../x" is "/x", as at a real root


def host_path(path, follow=True):
    """The host path of a board path: absolute board paths start at the board root. The
    directories on the way must resolve beneath the root; the last component is followed
    (follow=True) only when it stays beneath the root, else OSError(EACCES)."""
    bpath = _board_abs(path)
    if bpath == "/":
        return _ROOT
    if bpath.split("/")[1] == _TMP_DIR:
        raise OSError(_errno.EACCES, "reserved for the agent's temporary files", bpath)
    parent, name = _pp.split(_ROOT + bpath)
    real_parent = _os.path.realpath(parent)
    if not _beneath(real_parent):
        raise OSError(_errno.EACCES, "path escapes the board root", bpath)
    host = _pp.join(real_parent, name)
    if follow and _os.path.islink(host) and not _beneath(_os.path.realpath(host)):
        raise OSError(_errno.EACCES, "path escapes the board root", bpath)
    return host


def _not_root(path):
    """The host path of a board path that may be removed or renamed: never the root."""
    host = host_path(path, follow=False)
    if host == _ROOT:
        raise OSError(_errno.EPERM, "the board's root cannot be removed or moved", "/")
    return host


def _remote_path(path):
    """The board path when it is beneath a mounted /remote, else None."""
    if isinstance(path, (str, bytes)):
        bpath = _board_abs(path)
        if _remote.is_remote(bpath):
            return bpath
    return None


def board_open(file, mode="r", *args, **kwargs):
    """open() with board paths (installed as __main__.open)."""
    if _remote_path(file):
        return _remote.open_remote(_remote_path(file), mode, *args, **kwargs)
    if isinstance(file, (str, bytes)):
        file = host_path(file)
    return _builtins.open(file, mode, *args, **kwargs)


def chdir(path):
    """A directory of the board, or of a mounted /remote (as mpremote's mount makes /remote the
    working directory): relative paths then go to the host's files, while it is mounted."""
    rp = _remote_path(path)
    if rp:
        if not _remote.stat(rp)[0] & 0x4000:
            raise OSError(_errno.ENOTDIR, "not a directory", rp)
        _remote_cwd[0] = (_mqb.mount_id(), rp)
        return
    _os.chdir(host_path(path))
    _remote_cwd[0] = None


def _hidden(host_dir, name):
    return name == _TMP_DIR and host_dir == _ROOT


def listdir(path="."):
    return [e[0] for e in ilistdir(path)]


def ilistdir(path="."):
    """Yields (name, type, inode, size): type 0x4000 for directories, 0x8000 for files (and
    symlinks, which are never followed). A mounted /remote is not listed in the root: tree
    walks of the board (rm -r, sync) never reach the host's files."""
    if _remote_path(path):
        yield from _remote.ilistdir(_remote_path(path))
        return
    host = host_path(path)
    for entry in _os.scandir(host):
        if _hidden(host, entry.name):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            size = 0 if is_dir else entry.stat(follow_symlinks=False).st_size
        except OSError:
            is_dir, size = False, 0
        yield (entry.name, 0x4000 if is_dir else 0x8000, 0, size)


def stat(path):
    if _remote_path(path):
        return _remote.stat(_remote_path(path))
    host = host_path(path, follow=False)
    s = _os.lstat(host) if _os.path.islink(host) else _os.stat(host)
    return (s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid, s.st_gid, s.st_size,
            int(s.st_atime), int(s.st_mtime), int(s.st_ctime))


def statvfs(path):
    v = _os.statvfs(host_path(path))
    return (v.f_bsize, v.f_frsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree,
            v.f_favail, v.f_flag, v.f_namemax)


def mkdir(path):
    if _remote_path(path):
        return _remote.mkdir(_remote_path(path))
    _os.mkdir(host_path(path))


def rmdir(path):
    if _remote_path(path):
        return _remote.rmdir(_remote_path(path))
    _os.rmdir(_not_root(path))


def remove(path):
    if _remote_path(path):
        return _remote.remove(_remote_path(path))
    _os.remove(_not_root(path))


unlink = remove


def rename(old, new):
    if _remote_path(old):
        return _remote.rename(_remote_path(old), _board_abs(new))
    _os.rename(_not_root(old), _not_root(new))


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


def _to_board(path):
    """A host path beneath the root as the board's path ("/x"); anything else as it is."""
    for root in (_ROOT, _REAL_ROOT):
        if isinstance(path, str) and (path == root or path.startswith(root + "/")):
            return path[len(root):] or "/"
    return path


def _board_errors(fn):
    """Errors name the board's path, never the host's (which would show the host's layout)."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            if e.filename is not None:
                e.filename = _to_board(e.filename)
            if e.filename2 is not None:
                e.filename2 = _to_board(e.filename2)
            raise
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


for _name in ("board_open", "chdir", "listdir", "stat", "statvfs", "mkdir", "rmdir", "remove",
              "rename"):
    globals()[_name] = _board_errors(globals()[_name])
del _name
