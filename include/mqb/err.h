// Error codes of the mqb core: one X-macro list generates the enum and its strings,
// so a code and its message can never drift apart.
#ifndef MQB_ERR_H
#define MQB_ERR_H

#define MQB_ERRORS(X)                                                                              \
    X(OK, "success")                                                                               \
    X(MALFORMED, "malformed message")                                                              \
    X(TOOBIG, "message too big")                                                                   \
    X(NOSPACE, "buffer too small")                                                                 \
    X(DUP, "duplicate message")                                                                    \
    X(GAP, "sequence gap: a message was lost")                                                     \
    X(BUSY, "too many concurrent transfers")                                                       \
    X(NOENT, "no such file or directory")                                                          \
    X(ISDIR, "is a directory")                                                                     \
    X(NOTDIR, "not a directory")                                                                   \
    X(ESCAPE, "path escapes the board root")                                                       \
    X(BADPATH, "invalid path")                                                                     \
    X(ACCESS, "permission denied")                                                                 \
    X(NOSPC, "no space left on device")                                                            \
    X(IO, "I/O error")                                                                             \
    X(HASH, "hash mismatch")                                                                       \
    X(AGAIN, "resource temporarily unavailable")                                                   \
    X(UNSUPPORTED, "not supported")                                                                \
    X(TIMEDOUT, "transfer abandoned: nothing from the host for a minute")                          \
    X(STATE, "unexpected message for this transfer")                                               \
    X(NOTREG, "not a regular file")                                                                \
    X(PENDING, "the running image is not yet confirmed: try again once it is marked valid")        \
    X(AUTH, "not authorized: the board accepts only signed commands")                              \
    X(AUTH_KEY, "not authorized: the key is not in the board's authorized keys")                   \
    X(AUTH_BOOT, "not authorized: signed for another boot of the board (stale or replayed)")       \
    X(AUTH_REPLAY, "not authorized: this signed command was already used (replayed)")              \
    X(AUTH_SIG, "not authorized: bad signature")                                                   \
    X(IMAGE_UNSIGNED, "image refused: not signed by a release key the board trusts")               \
    X(IMAGE_SIG, "image refused: bad release signature")                                           \
    X(DOWNGRADE, "image refused: its version is below the board's (ota --allow-downgrade)")

enum mqb_err {
#define MQB_ERR_ENUM(name, str) MQB_ERR_##name,
    MQB_ERRORS(MQB_ERR_ENUM)
#undef MQB_ERR_ENUM
};

#define MQB_OK MQB_ERR_OK

// Returns the static, human-readable message of an error code (never NULL).
const char *mqb_strerror(enum mqb_err err);

#endif
