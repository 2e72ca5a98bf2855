# The host's directory at /remote (mqboard mount) and the host's keyboard (sys.stdin): the
# board asks its host over MQTT (_mqb.ask: a question on reply/ask/<id>, the answer on
# cmd/ans/<id>/<n>; docs/protocol.md). Requests carry board paths beneath /remote; the host
# serves only beneath the directory it mounted, and refuses writes unless mounted writable.
import errno
import io
import sys
import json
import threading
import importlib.util
import _mqb

MOUNT = "/remote"
CHUNK = 32768  # data bytes per read or write question
TIMEOUT = 10.0  # seconds the host has to answer a file question
_TO_EVAL, _TO_MOUNT = 0, 1


_imported_under = [None]  # the mount whose files the modules from /remote came from


def forget_stale_modules():
    """Called before each eval: when a new mount serves /remote, the modules imported from an
    earlier one are forgotten, so `mqboard mount src + exec 'import hello'` runs the hello.py
    just edited (mpremote gets the same by soft-resetting the board)."""
    mid = _mqb.mount_id()
    if mid is None or mid == _imported_under[0]:
        return
    _imported_under[0] = mid
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if isinstance(f, str) and f.startswith(MOUNT + "/"):
            del sys.modules[name]


def is_remote(bpath):
    return (bpath == MOUNT or bpath.startswith(MOUNT + "/")) and _mqb.mount() is not None


def _ask(op, bpath, data=b"", **kw):
    """One file question; returns the answer's data, or raises the host's OSError."""
    if op in ("write", "create", "mkdir", "remove", "rmdir", "rename") and not _mqb.mount():
        raise OSError(errno.EROFS, "mounted read-only (mqboard mount --rw)", bpath)
    kw.update(op=op, path=bpath[len(MOUNT):] or "/")
    ans = _mqb.ask(_TO_MOUNT, json.dumps(kw).encode() + b"\n" + data, TIMEOUT, CHUNK + 1)
    if ans[:1] == b"+":
        return ans[1:]
    name, _, text = ans[1:].decode("utf-8", "replace").partition(" ")
    code = getattr(errno, name, errno.EIO) if name.startswith("E") else errno.EIO
    raise OSError(code, text or "the host refused", bpath)


def _json(op, bpath, **kw):
    try:
        return json.loads(_ask(op, bpath, **kw))
    except ValueError:
        raise OSError(errno.EIO, "the host's answer is not JSON", bpath) from None


def stat(bpath):
    s = _json("stat", bpath)
    mode = 0o040755 if s.get("dir") else 0o100644
    size, mtime = int(s.get("size", 0)), int(s.get("mtime", 0))
    return (mode, 0, 0, 1, 0, 0, size, mtime, mtime, mtime)


def ilistdir(bpath):
    for e in _json("list", bpath):
        if isinstance(e, list) and len(e) == 3 and isinstance(e[0], str):
            yield (e[0], 0x4000 if e[1] else 0x8000, 0, int(e[2]))


def listdir(bpath):
    return [e[0] for e in ilistdir(bpath)]


def mkdir(bpath):
    _ask("mkdir", bpath)


def remove(bpath):
    _ask("remove", bpath)


def rmdir(bpath):
    _ask("rmdir", bpath)


def rename(old, new):
    if not is_remote(new):
        raise OSError(errno.EXDEV, "cannot rename across /remote", new)
    _ask("rename", old, to=new[len(MOUNT):])


class _RemoteRaw(io.RawIOBase):
    """A file of the host's directory, read and written at offsets (no handle to leak)."""

    def __init__(self, bpath, mode):
        self.bpath, self.pos = bpath, 0
        self._r = "r" in mode or "+" in mode
        self._w = any(c in mode for c in "wax+")
        if "w" in mode or "x" in mode:
            _ask("create", bpath, excl="x" in mode)
        elif "a" in mode:
            self.pos = stat(bpath)[6]
        elif stat(bpath)[0] & 0o040000:
            raise OSError(errno.EISDIR, "is a directory", bpath)

    def readable(self):
        return self._r

    def writable(self):
        return self._w

    def seekable(self):
        return True

    def readinto(self, b):
        data = _ask("read", self.bpath, off=self.pos, len=min(len(b), CHUNK))[:len(b)]
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def write(self, b):
        data = bytes(b)
        for i in range(0, len(data), CHUNK):
            _ask("write", self.bpath, data[i:i + CHUNK], off=self.pos + i)
        self.pos += len(data)
        return len(data)

    def seek(self, off, whence=0):
        base = (0, self.pos, stat(self.bpath)[6])[whence]
        self.pos = max(0, base + off)
        return self.pos

    def tell(self):
        return self.pos


def open_remote(bpath, mode="r", buffering=-1, encoding=None, errors=None, newline=None):
    raw = _RemoteRaw(bpath, mode)
    if "b" in mode and buffering == 0:
        return raw
    if raw.readable() and raw.writable():
        buf = io.BufferedRandom(raw, CHUNK)
    elif raw.writable():
        buf = io.BufferedWriter(raw, CHUNK)
    else:
        buf = io.BufferedReader(raw, CHUNK)
    if "b" in mode:
        return buf
    return io.TextIOWrapper(buf, encoding or "utf-8", errors, newline)


class RemoteFinder:  # a meta path finder by its methods (see _board.py)
    """import finds modules and packages in /remote first, while it is mounted."""

    def find_spec(self, name, path=None, target=None):
        if _mqb.mount() is None:
            return None
        base = MOUNT if path is None else next(
            (p for p in path if isinstance(p, str) and p.startswith(MOUNT)), None)
        if base is None:
            return None
        where = base + "/" + name.rpartition(".")[2]
        try:
            kind = _ask("find", where).decode()
        except OSError:
            return None
        file = where + ("/__init__.py" if kind == "pkg" else ".py")
        spec = importlib.util.spec_from_loader(name, _RemoteLoader(file), origin=file,
                                               is_package=kind == "pkg")
        if kind == "pkg":
            spec.submodule_search_locations = [where]
        return spec


class _RemoteLoader:
    def __init__(self, file):
        self.file = file

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        with open_remote(self.file, "rb") as f:
            src = f.read()
        module.__file__ = self.file
        exec(compile(src, self.file, "exec"), module.__dict__)


class Stdin(io.TextIOBase):
    """sys.stdin of an eval: lines typed on the host that follows it (mqboard eval, run,
    repl). Other threads, and evals nobody follows, read end of file."""

    encoding = "utf-8"

    def __init__(self, eval_thread):
        self._thread = eval_thread
        self._buf = b""
        self._eof = False

    def reset(self):
        """A new eval: nothing typed for the previous one is kept."""
        self._buf, self._eof = b"", False

    def readable(self):
        return True

    def isatty(self):
        return False

    def _fill(self):
        if self._eof or threading.get_ident() != self._thread:
            return False
        try:
            ans = _mqb.ask(_TO_EVAL, b'{"op":"stdin","len":4096}', 0, 4097)
        except OSError:
            ans = b""
        data = ans[1:] if ans[:1] == b"+" else b""
        self._eof = not data
        self._buf += data
        return bool(data)

    def readline(self, size=-1):
        while b"\n" not in self._buf and self._fill():
            pass
        i = self._buf.find(b"\n")
        n = len(self._buf) if i < 0 else i + 1
        n = n if size is None or size < 0 else min(n, size)
        line, self._buf = self._buf[:n], self._buf[n:]
        return line.decode("utf-8", "replace")

    def read(self, size=-1):
        while (size is None or size < 0 or len(self._buf) < size) and self._fill():
            pass
        n = len(self._buf) if size is None or size < 0 else size
        data, self._buf = self._buf[:n], self._buf[n:]
        return data.decode("utf-8", "replace")
