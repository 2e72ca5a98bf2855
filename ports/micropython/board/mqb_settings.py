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
