# /remote on the MicroPython board (mqboard mount): a VFS, mounted with os.mount as mpremote
# mounts its host's directory, whose files are the host's. Every operation is a question to the
# host that mounted it (reply/ask/<mount id>, the answer on cmd/ans/<id>/<n>; docs/protocol.md)
# asked through the agent, which waits for the answer while it keeps serving interrupts and the
# watchdog. The host serves only beneath its directory and refuses writes to a read-only
# mount; the board trusts no answer: each is checked for its form and bounded. Imported when a
# host mounts, so a board that is never mounted pays no memory for it.
import errno
import io
import json
import os
import sys

MOUNT = "/remote"
CHUNK = 4096  # data bytes per read question: one MQTT message the board can hold
WRITE_CHUNK = CHUNK - 512  # per write question, whose JSON (path, offset) shares the message
LIST_MAX = 32768  # the longest directory listing taken


def _err(ans, path):
    name, _, text = bytes(ans[1:]).decode().partition(" ")
    return OSError(getattr(errno, name, errno.EIO) if name[:1] == "E" else errno.EIO)


class RemoteFile(io.IOBase):
    """A file of the host's directory, read and written at offsets (the host keeps no handle
    for it, so nothing leaks when the board resets)."""

    def __init__(self, fs, path, mode):
        self.fs, self.path, self.pos, self.text = fs, path, 0, "b" not in mode
        self.buf = b""  # read ahead, not yet taken
        if "w" in mode or "x" in mode:
            fs.ask("create", path, excl="x" in mode)
        elif "a" in mode:
            self.pos = fs.stat(path)[6]
        elif fs.stat(path)[0] & 0x4000:
            raise OSError(errno.EISDIR)

    def _fill(self):
        if not self.buf:
            self.buf = self.fs.ask("read", self.path, off=self.pos, len=CHUNK)[:CHUNK]
            self.pos += len(self.buf)
        return self.buf

    def readinto(self, b):
        data = self._fill()[: len(b)]
        b[: len(data)] = data
        self.buf = self.buf[len(data):]
        return len(data)

    def read(self, n=-1):
        out = b""
        while n is None or n < 0 or len(out) < n:
            if not self._fill():
                break
            take = len(self.buf) if n is None or n < 0 else n - len(out)
            out, self.buf = out + self.buf[:take], self.buf[take:]
        return out.decode() if self.text else out

    def readline(self):
        out = b""
        while not out.endswith(b"\n") and self._fill():
            i = self.buf.find(b"\n")
            i = len(self.buf) if i < 0 else i + 1
            out, self.buf = out + self.buf[:i], self.buf[i:]
        return out.decode() if self.text else out

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def write(self, data):
        data = data.encode() if isinstance(data, str) else bytes(data)
        self.pos -= len(self.buf)  # what was read ahead is not taken
        self.buf = b""
        for i in range(0, len(data), WRITE_CHUNK):
            self.fs.ask("write", self.path, data[i:i + WRITE_CHUNK], off=self.pos + i)
        self.pos += len(data)
        return len(data)

    def seek(self, off, whence=0):
        self.pos = max(0, (0, self.pos - len(self.buf), self.fs.stat(self.path)[6])[whence] +
                       off)
        self.buf = b""
        return self.pos

    def tell(self):
        return self.pos - len(self.buf)

    def ioctl(self, req, arg):
        if req == 11:  # the import reader's buffer size
            return 256
        return 0 if req in (1, 4) else -1  # flush and close: nothing held

    def flush(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RemoteFS:
    """The VFS os.mount calls with paths beneath /remote ("/x/y.py", or relative to its own
    current directory)."""

    def __init__(self, agent, mid, rw):
        self.agent, self.id, self.rw, self.cwd = agent, mid, rw, "/"

    def ask(self, op, path, data=b"", **kw):
        """One file question; the answer's data, or the host's refusal as OSError."""
        if op in ("write", "create", "mkdir", "remove", "rmdir", "rename") and not self.rw:
            raise OSError(errno.EROFS)
        if self.agent.mount_id != self.id:
            raise OSError(errno.ENODEV)  # its host went (the lease ended)
        kw["op"], kw["path"] = op, self.abspath(path)
        ans = self.agent.ask(self.id, kw, data, max(CHUNK, LIST_MAX) + 1)
        if ans is None:
            raise OSError(errno.ETIMEDOUT)
        if ans[:1] != b"+":
            raise _err(ans, path)
        return ans[1:]

    def _json(self, op, path):
        try:
            return json.loads(self.ask(op, path))
        except ValueError:
            raise OSError(errno.EIO)

    def abspath(self, path):
        p = path if path.startswith("/") else self.cwd + path
        return p or "/"

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def chdir(self, path):
        p = self.abspath(path)
        p = p if p.endswith("/") else p + "/"
        if p != "/" and not self.stat(p)[0] & 0x4000:
            raise OSError(errno.ENOTDIR)
        self.cwd = p

    def getcwd(self):
        return self.cwd.rstrip("/") or "/"

    def stat(self, path):
        try:
            s = self._json("stat", path)
        except KeyboardInterrupt:  # import's search swallows what a VFS raises: the eval
            self.agent.interrupt_eval()  # gets it again at its next bytecode
            raise
        if not isinstance(s, dict):
            raise OSError(errno.EIO)
        size, mtime = int(s.get("size", 0)), int(s.get("mtime", 0))
        return (0x4000 if s.get("dir") else 0x8000, 0, 0, 0, 0, 0, size, mtime, mtime, mtime)

    def ilistdir(self, path):
        entries = self._json("list", path)
        for e in entries if isinstance(entries, list) else ():
            if isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and \
                    e[0] not in ("", ".", "..") and "/" not in e[0]:
                yield (e[0], 0x4000 if e[1] else 0x8000, 0, int(e[2]))

    def open(self, path, mode):
        return RemoteFile(self, path, mode)

    def mkdir(self, path):
        self.ask("mkdir", path)

    def remove(self, path):
        self.ask("remove", path)

    def rmdir(self, path):
        self.ask("rmdir", path)

    def rename(self, old, new):
        self.ask("rename", old, to=self.abspath(new))

    def statvfs(self, path):
        return (4096, 4096, 0, 0, 0, 0, 0, 0, 0, 255)


def mount(agent, mid, rw):
    """Mounts the host's directory at /remote (replacing an earlier mount) and forgets the
    modules imported from an earlier one, so an edited module is imported afresh."""
    unmount()
    for name in list(sys.modules):
        if getattr(sys.modules[name], "__file__", "").startswith(MOUNT + "/"):
            del sys.modules[name]
    os.mount(RemoteFS(agent, mid, rw), MOUNT)
    sys.path.insert(0, MOUNT)


def unmount():
    try:
        if os.getcwd().startswith(MOUNT):
            os.chdir("/")
    except OSError:
        pass
    try:
        os.umount(MOUNT)
    except OSError:
        pass
    while MOUNT in sys.path:
        sys.path.remove(MOUNT)
