// The device-side command engine: it takes the board's incoming command messages, applies
// the sequence rules, runs put/get/xput/xget/caps/ack itself over the platform's file and
// hash hooks, hands eval input to the platform, and publishes replies. Portable: no OS calls,
// no allocation; the caller owns the struct and drives it from one thread.
#ifndef MQB_ENGINE_H
#define MQB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/auth.h"
#include "mqb/config.h"
#include "mqb/err.h"
#include "mqb/wire.h"

#define MQB_SHA256_LEN 32
#define MQB_PROTO_VERSION 2

// Signed reply streams followed at once (their chain hashes); a further one is dropped and
// its signed reply fails the host's check.
#ifndef MQB_AUTH_CHAINS
#define MQB_AUTH_CHAINS 4
#endif
// SHA-256 slots the platform provides: one per transfer, one per reply chain.
#define MQB_HASH_SLOTS (MQB_MAX_XFERS + MQB_AUTH_CHAINS)

// What the engine needs from the platform. Every hook takes the ctx given to
// mqb_engine_init first and returns MQB_OK or an error; inputs are borrowed for the call.
struct mqb_platform {
    // Publishes one message at QoS 1 (payload includes the 2-byte header where there is one).
    enum mqb_err (*publish)(void *ctx, const char *topic, const uint8_t *payload, size_t len);
    // How many more messages may be published now without growing the outgoing queue
    // beyond its bound; streams wait (mqb_engine_pump) while it is 0.
    size_t (*out_room)(void *ctx);
    // Opens a board path for reading; sets *fh and *size.
    enum mqb_err (*file_open_read)(void *ctx, const char *path, int *fh, uint64_t *size);
    // Opens a temporary file beside the board path for writing; the path only changes at
    // file_close(commit=true).
    enum mqb_err (*file_open_write)(void *ctx, const char *path, int *fh);
    enum mqb_err (*file_read)(void *ctx, int fh, uint8_t *buf, size_t cap, size_t *n);
    enum mqb_err (*file_write)(void *ctx, int fh, const uint8_t *buf, size_t len);
    // Closes a handle. For a write handle, commit=true renames the temporary file over the
    // target; commit=false removes it and leaves the target untouched.
    enum mqb_err (*file_close)(void *ctx, int fh, bool commit);
    // SHA-256 contexts, slots 0 .. MQB_HASH_SLOTS-1.
    enum mqb_err (*hash_init)(void *ctx, unsigned slot);
    enum mqb_err (*hash_update)(void *ctx, unsigned slot, const uint8_t *data, size_t len);
    enum mqb_err (*hash_final)(void *ctx, unsigned slot, uint8_t out[MQB_SHA256_LEN]);
    // Eval input in order: first=true starts a new eval of id, last=true submits it. The
    // platform runs it and publishes its replies (see mqb_reply_*).
    enum mqb_err (*eval)(void *ctx, const char *id, const uint8_t *src, size_t len, bool first,
                         bool last);
    // An eval whose input stream failed (gap): forget what was buffered for id.
    void (*eval_abort)(void *ctx, const char *id);
    // Optional (may be NULL, then ota is "not supported"): opens the inactive firmware slot
    // for writing, and closes it; commit=true installs the image and makes it the one to
    // boot next, commit=false discards it and leaves the boot choice as it was.
    enum mqb_err (*ota_open)(void *ctx, int *fh);
    enum mqb_err (*ota_close)(void *ctx, int fh, bool commit);
    // Optional (may be NULL): decides whether a received image (its SHA-256 checked) may be
    // installed, before ota_close(commit=true); extra is what follows the hash in the topic
    // ("" or "/VERSION/SIGNATURE[/downgrade]": the release signature, docs/protocol.md).
    enum mqb_err (*ota_check)(void *ctx, const uint8_t sha256[MQB_SHA256_LEN], const char *extra);
    // Optional (may be NULL): commands the engine does not know (interrupt, reset, ...).
    // Returns MQB_ERR_UNSUPPORTED for a command the platform does not know either.
    enum mqb_err (*command)(void *ctx, const char *cmd, const char *id, const char *tail,
                            const uint8_t *data, size_t len);
    // Optional (NULL: no signatures): ECDSA P-256 over the SHA-256 of head then data.
    // sig_verify returns MQB_OK only when sig is pub's; sig_sign signs with the board's key.
    enum mqb_err (*sig_verify)(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                               size_t hlen, const uint8_t *data, size_t dlen,
                               const uint8_t sig[MQB_SIG_LEN]);
    enum mqb_err (*sig_sign)(void *ctx, const uint8_t *head, size_t hlen, const uint8_t *data,
                             size_t dlen, uint8_t sig[MQB_SIG_LEN]);
};

enum mqb_xfer_kind {
    MQB_XFER_NONE,
    MQB_XFER_PUT,  // original put: no hash, no acks
    MQB_XFER_XPUT, // verified put with acks
    MQB_XFER_GET,  // original get: 2800-byte chunks, no acks
    MQB_XFER_XGET, // get with negotiated chunk, window and final hash
    MQB_XFER_EVAL, // multi-message eval input
    MQB_XFER_OTA,  // firmware image into the inactive slot, hash in the topic tail
};

struct mqb_xfer {
    enum mqb_xfer_kind kind;
    char id[MQB_ID_MAX + 1];
    char path[MQB_PATH_MAX + 1];
    struct mqb_seq in;              // incoming sequence state (put, xput, eval)
    int fh;                         // platform file handle, -1 when closed
    uint32_t received;              // messages accepted (absolute count)
    uint32_t sent;                  // messages published (absolute count; wire seq = sent & 0x7FFF)
    uint32_t acked;                 // messages acknowledged by the host (xget)
    uint32_t window;                // 0: no flow control
    uint32_t chunk;                 // data bytes per outgoing message
    bool eof;                       // the file has been read to the end (get, xget)
    uint8_t sha256[MQB_SHA256_LEN]; // expected hash (xput)
    uint64_t last_ms;               // time of the last activity, for the idle timeout
};

// A signed command's reply stream whose data is being hashed (docs/protocol.md).
struct mqb_chain {
    bool used;
    char id[MQB_ID_MAX + 1];
    uint32_t age;
};

struct mqb_engine {
    const struct mqb_platform *plat;
    void *ctx;
    struct mqb_auth *auth; // borrowed; NULL or no keys: commands need no signature
    bool plain;            // the reply being sent goes unsigned (caps, refusals)
    struct mqb_chain chains[MQB_AUTH_CHAINS];
    uint32_t chain_age;
    uint8_t head[MQB_AUTH_HEAD_MAX];
    char prefix[MQB_PREFIX_MAX + 1];
    const char *agent; // borrowed: name and version for caps
    bool startup;      // still ignoring MQTT-duplicate commands (see docs/protocol.md)
    struct mqb_xfer xfers[MQB_MAX_XFERS];
    char topic[MQB_TOPIC_MAX];
    uint8_t buf[MQB_HDR_LEN + MQB_CHUNK_MAX + MQB_AUTH_TRAILER_LEN];
};

// Initializes e; prefix is copied; agent (name and version for caps, e.g. "mqrepld 0.1.0")
// is borrowed and must outlive e. Returns MQB_ERR_TOOBIG when prefix exceeds MQB_PREFIX_MAX.
enum mqb_err mqb_engine_init(struct mqb_engine *e, const struct mqb_platform *plat, void *ctx,
                             const char *prefix, const char *agent);

// Makes the engine check commands against auth (borrowed, owned by the port) and sign its
// replies: when auth has keys, a command message without a valid signature of one of them,
// for this boot, with a counter not yet used, is refused (mqb_auth_required says which
// messages); NULL turns it off.
void mqb_engine_set_auth(struct mqb_engine *e, struct mqb_auth *auth);

// True when commands must be signed (and replies are).
bool mqb_engine_signing(const struct mqb_engine *e);

// Checks a command message that a port handles without the engine (a board that reads
// interrupts itself while an eval runs): MQB_OK with *data/*dlen its data after the header
// (and after the signature block, which it verified and used up), or the refusal (see
// mqb_engine_set_auth). Without signing, only the header is checked.
enum mqb_err mqb_engine_verify(struct mqb_engine *e, const char *topic, const uint8_t *payload,
                               size_t len, const uint8_t **data, size_t *dlen);

// Publishes payload on topic (a question on reply/ask, ...), with a signature trailer when
// the engine signs; hlen is the length of its header (0 or MQB_HDR_LEN). len at most
// MQB_HDR_LEN + MQB_CHUNK_MAX.
enum mqb_err mqb_engine_publish_signed(struct mqb_engine *e, const char *topic,
                                       const uint8_t *payload, size_t len, size_t hlen);

// Aborts every open transfer (temporary files are discarded).
void mqb_engine_deinit(struct mqb_engine *e);

// Handles one incoming message. dup is the MQTT duplicate flag; now_ms a monotonic clock.
// Problems with the message are answered on reply/err when they can be attributed to a
// command; the return value says what happened (MQB_OK, MQB_ERR_DUP for a dropped message,
// MQB_ERR_MALFORMED for a topic or payload that could not be parsed, ...).
enum mqb_err mqb_engine_input(struct mqb_engine *e, const char *topic, const uint8_t *payload,
                              size_t len, bool dup, uint64_t now_ms);

// Advances outgoing streams (get) as far as windows and out_room allow, and aborts transfers
// idle for MQB_XFER_IDLE_MS. Returns true when more can be sent right away (call again).
bool mqb_engine_pump(struct mqb_engine *e, uint64_t now_ms);

// Number of open transfers.
unsigned mqb_engine_busy(const struct mqb_engine *e);

// Publishes one reply/out message of id with header (seq, last); (0x7FFF, true) is a
// single-message reply. Returns MQB_ERR_TOOBIG when len exceeds MQB_CHUNK_MAX.
enum mqb_err mqb_engine_reply_out(struct mqb_engine *e, const char *id, uint16_t seq, bool last,
                                  const uint8_t *data, size_t len);

// Publishes text (no header) on reply/err of id; text longer than MQB_CHUNK_MAX is cut.
enum mqb_err mqb_engine_reply_err(struct mqb_engine *e, const char *id, const char *text,
                                  size_t len);

#endif
