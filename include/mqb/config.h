// Compile-time limits of the mqb core, with defaults a port may override by defining them
// before this header is included (as MicroPython's mpconfig.h does).
#ifndef MQB_CONFIG_H
#define MQB_CONFIG_H

// Longest board prefix, e.g. "esp32/kitchen".
#ifndef MQB_PREFIX_MAX
#define MQB_PREFIX_MAX 128
#endif

// Longest command id (the original host uses 8 characters).
#ifndef MQB_ID_MAX
#define MQB_ID_MAX 32
#endif

// Longest command name.
#ifndef MQB_CMD_MAX
#define MQB_CMD_MAX 16
#endif

// Longest board path in a topic tail.
#ifndef MQB_PATH_MAX
#define MQB_PATH_MAX 512
#endif

// Longest topic the core builds: prefix, "/mqb/cmd/", command, id, path.
#define MQB_TOPIC_MAX (MQB_PREFIX_MAX + MQB_CMD_MAX + MQB_ID_MAX + MQB_PATH_MAX + 24)

// Largest data chunk of one message in either direction (the extended protocol); the
// engine keeps one buffer of this size.
#ifndef MQB_CHUNK_MAX
#define MQB_CHUNK_MAX 65536
#endif

// Chunk sizes of the original protocol.
#define MQB_CHUNK_ORIG_GET 2800
#define MQB_CHUNK_ORIG_PUT 1400

// The original host sends puts in 1400-byte messages: a board must take them.
_Static_assert(MQB_CHUNK_MAX >= MQB_CHUNK_ORIG_PUT,
               "MQB_CHUNK_MAX below the original host's 1400-byte put messages");

// Messages in flight beyond the last acknowledgement in a flow-controlled stream.
#ifndef MQB_WINDOW
#define MQB_WINDOW 16
#endif

// Transfers (put, get, ota) that may be open at once.
#ifndef MQB_MAX_XFERS
#define MQB_MAX_XFERS 4
#endif

// A transfer with no message for this long is aborted and its slot freed.
#ifndef MQB_XFER_IDLE_MS
#define MQB_XFER_IDLE_MS 60000
#endif

#endif
