# This board's settings: edit them, copy this file to the board, reset. On the unix port the
# test fixture (and scripts) may override them from the environment (MQB_* variables).
WIFI = None  # ("ssid", "password") on a board with Wi-Fi; None: already connected / wired
SERVER = "192.168.1.10"  # the MQTT broker
PORT = 1883
PREFIX = "esp32/kitchen"  # this board's topic prefix
USER = None  # broker credentials, or None
PASSWORD = None
WDT_TIMEOUT = 300  # seconds without a loop-back feed before a reset into safe mode; 0: off
ALLOK = 300  # seconds of continuous feeding after which the next boot may be normal
# The board's key (made here at the first start) and the keys it obeys (authorized_keys:
# copy your id_mqb.pub there over the serial console): docs/security.md. Needs firmware
# with the ssl module (mbedTLS); None: no keys, anyone on the broker controls the board.
KEYS = "/.mqb-keys"
