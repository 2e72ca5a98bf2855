# The board's main.py: starts the board package, trying an update of it first. The package
# lives in /mqb (or, as an install without the folder left it, at the root). An update is a new
# package put into /mqb.new over MQTT (mqboard put -r pkg/ :/mqb.new + reset): it is tried
# once; if it does not come up and confirm (controllable for ALLOK s: mqb_platform.confirm),
# the next start deletes it and runs /mqb again. A power cut at any point leaves one of the two.
import os
import sys

CUR, NEW, OLD = "/mqb", "/mqb.new", "/mqb.old"
TRIED = NEW + "/.tried"


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _rmtree(p):
    for e in os.ilistdir(p):
        q = p + "/" + e[0]
        _rmtree(q) if e[1] == 0x4000 else os.remove(q)
    os.rmdir(p)


def choose():
    """The package folder to run, and whether it is on trial."""
    if _exists(NEW) and _exists(TRIED):
        _rmtree(NEW)  # tried, never confirmed: rolled back
    if _exists(NEW):
        open(TRIED, "w").close()
        return NEW, True
    if not _exists(CUR) and _exists(OLD):
        os.rename(OLD, CUR)  # cut during a promotion (mqb_platform.confirm)
    return CUR, False


def main():
    where, trial = choose()
    sys.path.insert(0, where)
    try:
        import mqb_agent
        mqb_agent.start()
    except Exception as e:  # noqa: BLE001
        sys.print_exception(e)
        if trial:  # a new package that cannot even start: back to the old one at once
            try:
                import machine
                machine.reset()
            except (ImportError, AttributeError):
                sys.exit(77)  # the unix port's board: its launcher starts it again
        raise


main()
