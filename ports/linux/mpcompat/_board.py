# mqrepld's Python side, run once when the evaluator starts: the importer for the embedded
# MicroPython-compatibility modules, the u-module aliases, sys.path and sys.implementation,
# the names the original mqboard's programs expect in __main__ (sys, machine, log, watchdog),
# and logging to the board's PREFIX/log topic.
import sys, types, threading, traceback, importlib, importlib.util, logging
import _mqb

VERSION = _mqb.version()


# Finders and loaders by their methods, not importlib.abc's classes: importing importlib.abc
# pulls in importlib.resources, pathlib, tempfile, shutil, bz2, lzma (megabytes of memory).
class _EmbeddedFinder:
    """Imports the modules built into mqrepld (uos, machine, watchdog, ...)."""

    def __init__(self, sources):
        self.sources = sources

    def find_spec(self, name, path=None, target=None):
        if name in self.sources:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = compile(self.sources[module.__name__], "<mqrepld>/%s.py" % module.__name__, "exec")
        exec(code, module.__dict__)


sys.meta_path.insert(0, _EmbeddedFinder(_mqb.sources()))

class _AliasFinder:
    """MicroPython's u-prefixed names for the standard modules (`import ujson` is json),
    imported when first asked for: importing them all at start (asyncio, ssl, socket, ...)
    cost the agent a third of its memory."""

    NAMES = ("binascii", "collections", "errno", "hashlib", "heapq", "io", "json", "random",
             "re", "select", "socket", "ssl", "struct", "zlib", "asyncio")

    def find_spec(self, name, path, target=None):
        if path is None and name[:1] == "u" and name[1:] in self.NAMES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(spec.name[1:])  # the standard module itself

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _AliasFinder())
sys.modules["usys"] = sys

# The board's module path: the root and /lib, as on a MicroPython board.
_root = _mqb.root()
for _p in (_root + "/lib", _root):
    if _p not in sys.path:
        sys.path.insert(0, _p)

_impl = dict(vars(sys.implementation))
_impl.update(name="mqrepld", version=tuple(int(x) for x in VERSION.split(".")),
             _python=sys.implementation.name, _machine="mqrepld %s with Python %s" % (
                 VERSION, sys.version.split()[0]))
sys.implementation = types.SimpleNamespace(**_impl)


class _MqttLogHandler(logging.Handler):
    """Sends log records to PREFIX/log as 'L message' lines (L = severity letter)."""

    def emit(self, record):
        try:
            _mqb.log(record.levelname[:1], self.format(record))
        except Exception:
            self.handleError(record)


_handler = _MqttLogHandler()
_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
logging.getLogger().addHandler(_handler)
logging.getLogger().setLevel(logging.INFO)


class _Log:
    """The original board's `log`: a logger that also has exc(exception, message)."""

    def __init__(self, logger):
        self._l = logger
        for level in ("debug", "info", "warning", "error", "critical"):
            setattr(self, level, getattr(logger, level))
        self.warn = logger.warning

    def exc(self, e, msg, *args):
        self._l.error(msg, *args, exc_info=e)


_eval_thread = threading.get_ident()  # this module is set up on the evaluator thread


class _Out:
    """sys.stdout and sys.stderr: output of an eval goes to its reply; output of other
    threads (the application) goes to the log, as 'I' lines."""

    encoding = "utf-8"
    errors = "strict"

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not " + type(s).__name__)
        if threading.get_ident() == _eval_thread and not _quiet:
            _mqb.write(s)
        else:
            for line in s.splitlines():
                if line.strip():
                    _mqb.log("I", line)
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False


sys.stdout = sys.stderr = _Out()

import _remote  # noqa: E402 (needs the embedded finder)

sys.stdin = _remote.Stdin(_eval_thread)
sys.meta_path.insert(1, _remote.RemoteFinder())


def _compile(src):
    """Compiles src as the console REPL does: as an expression if it is one, else as one
    interactive statement (its expression values are shown, as `import os; os.listdir()` at
    the REPL), else as statements. A SyntaxError is raised once, without the attempts that
    came before it. Returns (code, whether it runs as statements)."""
    for mode in ("eval", "single"):
        try:
            return compile(src, "<stdin>", mode), mode != "eval"
        except SyntaxError:
            pass
    return compile(src, "<stdin>", "exec"), True


def format_exc(ex):
    """The traceback as the console shows it, without mqrepld's own frames."""
    frames = [f for f in traceback.extract_tb(ex.__traceback__)
              if not f.filename.startswith("<mqrepld>")]
    text = "".join(traceback.format_exception_only(type(ex), ex))
    if frames:
        text = "Traceback (most recent call last):\n" + "".join(
            traceback.format_list(frames)) + text
    return text


_quiet = False  # output of the eval goes to the log, not to its reply (original mode)


def _run_original(src, g):
    """As the original mqrepl.py: an expression replies repr(result) only (what it prints
    is not captured); statements reply their output only."""
    global _quiet
    try:
        code = compile(src, "<stdin>", "eval")
    except SyntaxError:
        code = None
    if code is None:
        exec(compile(src, "<stdin>", "exec"), g)
        return None
    _quiet = True
    try:
        return repr(eval(code, g))
    finally:
        _quiet = False


def run(src, g, original=False):
    """Runs src in g (see _compile). Returns (repr of the result or None, traceback text or
    None, whether it ran as statements)."""
    is_exec = False
    sys.stdin.reset()
    # Files put since the last eval (a new /lib, say) are importable now: the import system
    # forgets directories it found missing or unchanged.
    importlib.invalidate_caches()
    _remote.forget_stale_modules()
    try:
        if original:
            r = _run_original(src, g)
            return (r, None, r is None)
        code, is_exec = _compile(src)
        r = eval(code, g)
        return (None if r is None else repr(r), None, is_exec)
    except BaseException as ex:
        return (None, format_exc(ex), is_exec)


def _on_signal(signum, frame):
    """The interrupt signal: answers the watchdog's probe; raises KeyboardInterrupt only when
    an interrupt names the eval that runs."""
    if _mqb.on_signal():
        raise KeyboardInterrupt


def bind_signal(signum):
    import signal
    signal.signal(signum, _on_signal)


def start_app(path, g):
    """Runs the application file in __main__'s globals on a thread of its own."""

    def app():
        try:
            with open(path) as f:
                code = compile(f.read(), path[len(_root):] or path, "exec")
            exec(code, g)
        except BaseException as ex:
            logging.getLogger("main").critical(
                "application stopped: %s", "".join(traceback.format_exception(ex)).strip())

    threading.Thread(target=app, name="main.py", daemon=True).start()


# In __main__ (evals, main.py), the modern MicroPython names are the board's: `import os` is
# uos (the board's filesystem), `import time` utime (ticks_ms, sleep_ms), `import gc` ugc
# (mem_free). The rest of Python, the agent's own modules included, keeps the host's.
_BOARD_MODULES = {"os": "uos", "time": "utime", "gc": "ugc"}


def _board_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0:
        name = _BOARD_MODULES.get(name, name)
    return _real_import(name, globals, locals, fromlist, level)


_real_import = __import__


def install(globals_):
    """Puts the names the original tool's programs use into __main__'s globals, and gives
    __main__ builtins of its own: the board's open and the board's modules on import."""
    import builtins, uos, machine, watchdog
    b = dict(vars(builtins), __import__=_board_import, open=uos.board_open)
    globals_.update(sys=sys, machine=machine, watchdog=watchdog, open=uos.board_open,
                    log=_Log(logging.getLogger("main")), __builtins__=b)
