// Signed commands and signed replies: which messages carry a signature, the signature
// block's layout, the bytes a signature covers, the board's authorized keys and its replay
// window. Portable: the core builds and checks; the port's hooks hash, sign and verify
// (ECDSA P-256 with SHA-256: OpenSSL on Linux, mbedTLS on MicroPython boards). The rules
// are in docs/protocol.md ("Signed commands").
#ifndef MQB_AUTH_H
#define MQB_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/config.h"
#include "mqb/err.h"
#include "mqb/wire.h"

#define MQB_PUBKEY_LEN 65 // an uncompressed P-256 point: 0x04, X, Y
#define MQB_KEYID_LEN 8   // the first 8 bytes of the SHA-256 of the point
#define MQB_BOOTID_LEN 8  // the board's boot id (16 hex digits in its status)
#define MQB_SIG_LEN 64    // r || s, 32 bytes each, big-endian
#define MQB_AUTH_MAGIC "MQS1"
// The block after a signed command's 2-byte header: magic, key id, boot id, counter
// (big-endian), signature.
#define MQB_AUTH_BLOCK_LEN (4 + MQB_KEYID_LEN + MQB_BOOTID_LEN + 8 + MQB_SIG_LEN)
// The trailer of a signed reply: signature, then the magic.
#define MQB_AUTH_TRAILER_LEN (MQB_SIG_LEN + 4)
// The longest head a signature covers (domain, topic, header, fields, chain hash).
#define MQB_AUTH_HEAD_MAX (16 + MQB_TOPIC_MAX + MQB_HDR_LEN + MQB_AUTH_BLOCK_LEN + 32)

// Keys a board accepts commands from.
#ifndef MQB_AUTH_KEYS_MAX
#define MQB_AUTH_KEYS_MAX 8
#endif
// Counters remembered per key: commands of one key may arrive this far out of order.
#ifndef MQB_AUTH_WINDOW
#define MQB_AUTH_WINDOW 32
#endif

struct mqb_auth_key {
    uint8_t id[MQB_KEYID_LEN];
    uint8_t pub[MQB_PUBKEY_LEN];
    uint64_t floor;                 // counters at or below are refused
    uint64_t seen[MQB_AUTH_WINDOW]; // accepted counters above floor
    unsigned nseen;
};

// The board's trust state: its authorized keys (none: it runs unsigned commands, as the
// original) and its boot id. Owned by the port, read by the engine.
struct mqb_auth {
    unsigned nkeys;
    struct mqb_auth_key keys[MQB_AUTH_KEYS_MAX];
    uint8_t boot_id[MQB_BOOTID_LEN];
};

struct mqb_auth_block {
    uint8_t keyid[MQB_KEYID_LEN];
    uint8_t boot_id[MQB_BOOTID_LEN];
    uint64_t counter;
    uint8_t sig[MQB_SIG_LEN];
};

// True when a command message must carry a signature block (both sides apply this rule):
// every message except ack and caps, of which a stream's middle messages are exempt where a
// signed hash covers them (ota: the hash in the topic; xput: the hash in its last message).
bool mqb_auth_required(const char *cmd, const struct mqb_hdr *h);

void mqb_auth_block_encode(uint8_t out[MQB_AUTH_BLOCK_LEN], const struct mqb_auth_block *b);
// MQB_ERR_MALFORMED when data does not begin with a block.
enum mqb_err mqb_auth_block_decode(const uint8_t *data, size_t len, struct mqb_auth_block *b);

// The head a command's signature covers, followed by the message's data (after the block):
// "mqb-cmd-1\0", topic, "\0", the 2-byte header, key id, boot id, counter. Returns its
// length (0 when cap is too small).
size_t mqb_auth_cmd_head(uint8_t *out, size_t cap, const char *topic,
                         const uint8_t hdr[MQB_HDR_LEN], const struct mqb_auth_block *b);

// The head a reply's signature covers, followed by the reply's data (before the trailer):
// "mqb-reply-1\0", topic, "\0", the payload's first hlen bytes (its header, or none),
// and chain: the SHA-256 of the reply/out data chained since the last signed reply of that
// id, or 32 zero bytes when none was. Also used for questions (reply/ask) and the status
// (its topic says which).
size_t mqb_auth_reply_head(uint8_t *out, size_t cap, const char *topic, const uint8_t *hdr,
                           size_t hlen, const uint8_t chain[32]);

// The bytes a release signature of a firmware image covers: "mqb-image-1\0", the image's
// SHA-256, its version (8 bytes, big-endian). Returns the length (0 when cap is too small).
size_t mqb_auth_image_head(uint8_t *out, size_t cap, const uint8_t sha256[32], uint64_t version);

// A port's check of one signature (r || s) over head by the key pub: true when it holds.
typedef bool (*mqb_auth_verify_fn)(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN],
                                   const uint8_t *head, size_t hlen,
                                   const uint8_t sig[MQB_SIG_LEN]);

// The release rule for a firmware image (docs/protocol.md, "Signed firmware"), the same on
// every port. extra is the ota topic's tail after the image's hash: "/VERSION/SIG" (SIG: 128
// hex digits) and "/downgrade" when asked for. With n release keys (none: any image, the hash
// was checked), the image needs a signature by one of them over its hash and version, and a
// version at least recorded unless downgrade. MQB_OK with *version set (the port records it),
// MQB_ERR_IMAGE_UNSIGNED, MQB_ERR_IMAGE_SIG or MQB_ERR_DOWNGRADE.
enum mqb_err mqb_auth_image_check(const uint8_t (*pubs)[MQB_PUBKEY_LEN], unsigned n,
                                  const uint8_t sha256[32], const char *extra, uint64_t recorded,
                                  mqb_auth_verify_fn verify, void *ctx, uint64_t *version);

// Adds an authorized key (its id computed by the port). MQB_ERR_NOSPACE when the table is
// full; adding a key already there changes nothing.
enum mqb_err mqb_auth_add_key(struct mqb_auth *a, const uint8_t id[MQB_KEYID_LEN],
                              const uint8_t pub[MQB_PUBKEY_LEN]);

// Checks what a block claims before its signature is verified: a known key, this boot, a
// counter not yet used. Sets *key. MQB_ERR_AUTH_KEY, MQB_ERR_AUTH_BOOT or
// MQB_ERR_AUTH_REPLAY.
enum mqb_err mqb_auth_precheck(const struct mqb_auth *a, const struct mqb_auth_block *b,
                               unsigned *key);

// Records a counter of key whose signature was verified: it can never be used again in this
// boot (the window keeps the newest MQB_AUTH_WINDOW; older ones raise the floor).
void mqb_auth_record(struct mqb_auth *a, unsigned key, uint64_t counter);

// "SHA256:", 43 base64 digits, NUL.
#define MQB_FPR_LEN 51

// A port's key helpers for the trust command (its crypto library hashes and decodes).
struct mqb_auth_keyops {
    void *ctx;
    // The point of a key line ("mqb-p256 BASE64 comment", or the bare BASE64), on the curve:
    // 0, or -1.
    int (*parse)(void *ctx, const char *line, uint8_t pub[MQB_PUBKEY_LEN]);
    // The point's SHA-256 (its fingerprint is "SHA256:" and its unpadded base64; its key id
    // the first MQB_KEYID_LEN bytes).
    void (*sha256)(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], uint8_t out[32]);
    // base64 of n bytes (4 * ((n + 2) / 3) digits and NUL; n at most 65).
    void (*b64)(void *ctx, const uint8_t *in, size_t n, char *out);
};

// The point's fingerprint (ops hash and encode).
void mqb_auth_fingerprint(const struct mqb_auth_keyops *ops, const uint8_t pub[MQB_PUBKEY_LEN],
                          char out[MQB_FPR_LEN]);

enum mqb_trust_result {
    MQB_TRUST_FAILED,   // out says why
    MQB_TRUST_ANSWERED, // out is the answer (list, or nothing to change)
    MQB_TRUST_CHANGED,  // the table changed: the port saves it (or restores a copy made before)
};

// The trust command (docs/security.md) on a's keys, its data (arg, len: "list", "add KEY" or
// "remove FINGERPRINT|KEY"): the reply text in out (NUL-terminated). The same on every port.
enum mqb_trust_result mqb_auth_trust(struct mqb_auth *a, const struct mqb_auth_keyops *ops,
                                     const char *arg, size_t len, char *out, size_t cap);

#endif
