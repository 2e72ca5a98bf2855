# The board package frozen into a firmware that has the mqb module: its bytecode then stays in
# flash instead of the heap (docs/micropython.md, "Freezing the board package"). Include it
# from the board's own manifest, after the port's:
#   include("$(PORT_DIR)/boards/manifest.py")
#   include("/path/to/mqboard/ports/micropython/manifest.py")
# and build with FROZEN_MANIFEST=that file and USER_C_MODULES as usual. A file of the same
# name on the board's filesystem (put over MQTT) is imported before the frozen one.
require("umqtt.simple")
module("mqb_agent.py", base_path="board")
module("mqb_eval.py", base_path="board")
module("mqb_platform.py", base_path="board")
module("mqb_remote.py", base_path="board")
module("mqb_settings.py", base_path="board")
