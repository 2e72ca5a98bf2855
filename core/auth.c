// Signed commands and replies: the message rule, the block, the signed heads, the key table
// and the replay window (include/mqb/auth.h; docs/protocol.md "Signed commands").
#include "mqb/auth.h"
#include "strbuf.h"

#include <string.h>

bool mqb_auth_required(const char *cmd, const struct mqb_hdr *h) {
    if (strcmp(cmd, "ack") == 0 || strcmp(cmd, "caps") == 0) {
        return false; // flow control and what the board can do: nothing to protect
    }
    bool edge = mqb_hdr_is_single(h) || h->seq == 0;
    if (strcmp(cmd, "ota") == 0) {
        return edge; // the rest is covered by the signed hash in the topic
    }
    if (strcmp(cmd, "xput") == 0) {
        return edge || h->last; // ... by the signed hash in the last message
    }
    return true;
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

void mqb_auth_block_encode(uint8_t out[MQB_AUTH_BLOCK_LEN], const struct mqb_auth_block *b) {
    memcpy(out, MQB_AUTH_MAGIC, 4);
    memcpy(out + 4, b->keyid, MQB_KEYID_LEN);
    memcpy(out + 12, b->boot_id, MQB_BOOTID_LEN);
    put_u64(out + 20, b->counter);
    memcpy(out + 28, b->sig, MQB_SIG_LEN);
}

enum mqb_err mqb_auth_block_decode(const uint8_t *data, size_t len, struct mqb_auth_block *b) {
    if (len < MQB_AUTH_BLOCK_LEN || memcmp(data, MQB_AUTH_MAGIC, 4) != 0) {
        return MQB_ERR_MALFORMED;
    }
    memcpy(b->keyid, data + 4, MQB_KEYID_LEN);
    memcpy(b->boot_id, data + 12, MQB_BOOTID_LEN);
    b->counter = get_u64(data + 20);
    memcpy(b->sig, data + 28, MQB_SIG_LEN);
    return MQB_OK;
}

// Appends n bytes at *len when they fit; sets *len past cap otherwise.
static void add(uint8_t *out, size_t cap, size_t *len, const void *p, size_t n) {
    if (n > 0 && *len + n <= cap) { // p may be NULL when n is 0 (no header)
        memcpy(out + *len, p, n);
    }
    *len += n;
}

static size_t head_start(uint8_t *out, size_t cap, const char *domain, const char *topic) {
    size_t len = 0;
    add(out, cap, &len, domain, strlen(domain) + 1);
    add(out, cap, &len, topic, strlen(topic) + 1);
    return len;
}

size_t mqb_auth_cmd_head(uint8_t *out, size_t cap, const char *topic,
                         const uint8_t hdr[MQB_HDR_LEN], const struct mqb_auth_block *b) {
    uint8_t counter[8];
    put_u64(counter, b->counter);
    size_t len = head_start(out, cap, "mqb-cmd-1", topic);
    add(out, cap, &len, hdr, MQB_HDR_LEN);
    add(out, cap, &len, b->keyid, MQB_KEYID_LEN);
    add(out, cap, &len, b->boot_id, MQB_BOOTID_LEN);
    add(out, cap, &len, counter, sizeof(counter));
    return len <= cap ? len : 0;
}

size_t mqb_auth_reply_head(uint8_t *out, size_t cap, const char *topic, const uint8_t *hdr,
                           size_t hlen, const uint8_t chain[32]) {
    size_t len = head_start(out, cap, "mqb-reply-1", topic);
    add(out, cap, &len, hdr, hlen);
    add(out, cap, &len, chain, 32);
    return len <= cap ? len : 0;
}

size_t mqb_auth_image_head(uint8_t *out, size_t cap, const uint8_t sha256[32], uint64_t version) {
    uint8_t v[8];
    put_u64(v, version);
    size_t len = 0;
    add(out, cap, &len, "mqb-image-1", 12);
    add(out, cap, &len, sha256, 32);
    add(out, cap, &len, v, sizeof(v));
    return len <= cap ? len : 0;
}

enum mqb_err mqb_auth_add_key(struct mqb_auth *a, const uint8_t id[MQB_KEYID_LEN],
                              const uint8_t pub[MQB_PUBKEY_LEN]) {
    for (unsigned i = 0; i < a->nkeys; i++) {
        if (memcmp(a->keys[i].pub, pub, MQB_PUBKEY_LEN) == 0) {
            return MQB_OK;
        }
    }
    if (a->nkeys == MQB_AUTH_KEYS_MAX) {
        return MQB_ERR_NOSPACE;
    }
    struct mqb_auth_key *k = &a->keys[a->nkeys++];
    memset(k, 0, sizeof(*k));
    memcpy(k->id, id, MQB_KEYID_LEN);
    memcpy(k->pub, pub, MQB_PUBKEY_LEN);
    return MQB_OK;
}

enum mqb_err mqb_auth_precheck(const struct mqb_auth *a, const struct mqb_auth_block *b,
                               unsigned *key) {
    unsigned i = 0;
    while (i < a->nkeys && memcmp(a->keys[i].id, b->keyid, MQB_KEYID_LEN) != 0) {
        i++;
    }
    if (i == a->nkeys) {
        return MQB_ERR_AUTH_KEY;
    }
    if (memcmp(b->boot_id, a->boot_id, MQB_BOOTID_LEN) != 0) {
        return MQB_ERR_AUTH_BOOT;
    }
    const struct mqb_auth_key *k = &a->keys[i];
    if (b->counter <= k->floor) {
        return MQB_ERR_AUTH_REPLAY;
    }
    for (unsigned j = 0; j < k->nseen; j++) {
        if (k->seen[j] == b->counter) {
            return MQB_ERR_AUTH_REPLAY;
        }
    }
    *key = i;
    return MQB_OK;
}

void mqb_auth_record(struct mqb_auth *a, unsigned key, uint64_t counter) {
    struct mqb_auth_key *k = &a->keys[key];
    if (k->nseen < MQB_AUTH_WINDOW) {
        k->seen[k->nseen++] = counter;
        return;
    }
    unsigned min = 0;
    for (unsigned j = 1; j < k->nseen; j++) {
        min = k->seen[j] < k->seen[min] ? j : min;
    }
    if (counter < k->seen[min]) {
        k->floor = counter; // older than everything kept: used up at once
        return;
    }
    k->floor = k->seen[min];
    k->seen[min] = counter;
}

void mqb_auth_fingerprint(const struct mqb_auth_keyops *ops, const uint8_t pub[MQB_PUBKEY_LEN],
                          char out[MQB_FPR_LEN]) {
    uint8_t md[32];
    char b64[48];
    ops->sha256(ops->ctx, pub, md);
    ops->b64(ops->ctx, md, sizeof(md), b64);
    memcpy(out, "SHA256:", 7);
    memcpy(out + 7, b64, 43); // 44 digits, the last one padding
    out[MQB_FPR_LEN - 1] = '\0';
}

// At most 60 characters of what the command named, in a reply.
static void add_named(struct mqb__strbuf *sb, const char *arg) {
    size_t n = 0;
    while (n < 60 && arg[n] != '\0') {
        n++;
    }
    mqb__strbuf_addn(sb, arg, n);
}

// The key named by arg (a key line or a fingerprint), or a->nkeys.
static unsigned find_key(const struct mqb_auth *a, const struct mqb_auth_keyops *ops,
                         const char *arg) {
    uint8_t pub[MQB_PUBKEY_LEN];
    bool line = ops->parse(ops->ctx, arg, pub) == 0;
    unsigned i = 0;
    for (; i < a->nkeys; i++) {
        char fpr[MQB_FPR_LEN];
        mqb_auth_fingerprint(ops, a->keys[i].pub, fpr);
        if ((line && memcmp(pub, a->keys[i].pub, MQB_PUBKEY_LEN) == 0) || strcmp(arg, fpr) == 0) {
            break;
        }
    }
    return i;
}

static enum mqb_trust_result trust_add(struct mqb_auth *a, const struct mqb_auth_keyops *ops,
                                       const char *arg, struct mqb__strbuf *sb) {
    uint8_t pub[MQB_PUBKEY_LEN], md[32];
    char fpr[MQB_FPR_LEN];
    if (ops->parse(ops->ctx, arg, pub) != 0) {
        mqb__strbuf_add(sb, "not a public key: ");
        add_named(sb, arg);
        return MQB_TRUST_FAILED;
    }
    mqb_auth_fingerprint(ops, pub, fpr);
    if (find_key(a, ops, fpr) < a->nkeys) {
        mqb__strbuf_add(sb, "already authorized: ");
        mqb__strbuf_add(sb, fpr);
        return MQB_TRUST_ANSWERED;
    }
    ops->sha256(ops->ctx, pub, md);
    if (mqb_auth_add_key(a, md, pub) != MQB_OK) {
        mqb__strbuf_add(sb, "at most ");
        mqb__strbuf_add_u64(sb, MQB_AUTH_KEYS_MAX);
        mqb__strbuf_add(sb, " authorized keys: remove one first");
        return MQB_TRUST_FAILED;
    }
    mqb__strbuf_add(sb, "authorized: ");
    mqb__strbuf_add(sb, fpr);
    return MQB_TRUST_CHANGED;
}

static enum mqb_trust_result trust_remove(struct mqb_auth *a, const struct mqb_auth_keyops *ops,
                                          const char *arg, struct mqb__strbuf *sb) {
    unsigned i = find_key(a, ops, arg);
    char fpr[MQB_FPR_LEN];
    if (i == a->nkeys) {
        mqb__strbuf_add(sb, "no such authorized key: ");
        add_named(sb, arg);
        return MQB_TRUST_FAILED;
    }
    if (a->nkeys == 1) {
        mqb__strbuf_add(sb, "refusing to remove the last authorized key: the board would obey "
                            "anyone (add another key first)");
        return MQB_TRUST_FAILED;
    }
    mqb_auth_fingerprint(ops, a->keys[i].pub, fpr);
    memmove(&a->keys[i], &a->keys[i + 1], (a->nkeys - i - 1) * sizeof(a->keys[0]));
    a->nkeys--;
    mqb__strbuf_add(sb, "removed: ");
    mqb__strbuf_add(sb, fpr);
    return MQB_TRUST_CHANGED;
}

enum mqb_trust_result mqb_auth_trust(struct mqb_auth *a, const struct mqb_auth_keyops *ops,
                                     const char *arg, size_t len, char *out, size_t cap) {
    char buf[256];
    struct mqb__strbuf sb;
    enum mqb_trust_result r = MQB_TRUST_FAILED;
    mqb__strbuf_init(&sb, out, cap);
    if (len >= sizeof(buf)) {
        mqb__strbuf_add(&sb, "trust: argument too long");
        return r;
    }
    memcpy(buf, arg, len);
    buf[len] = '\0';
    size_t op = strcspn(buf, " ");
    const char *rest = buf[op] != '\0' ? buf + op + 1 : NULL;
    buf[op] = '\0';
    if (strcmp(buf, "list") == 0) {
        for (unsigned i = 0; i < a->nkeys; i++) {
            char fpr[MQB_FPR_LEN];
            mqb_auth_fingerprint(ops, a->keys[i].pub, fpr);
            mqb__strbuf_add(&sb, fpr);
            mqb__strbuf_add(&sb, "\n");
        }
        r = MQB_TRUST_ANSWERED;
    } else if (strcmp(buf, "add") == 0 && rest != NULL) {
        r = trust_add(a, ops, rest, &sb);
    } else if (strcmp(buf, "remove") == 0 && rest != NULL) {
        r = trust_remove(a, ops, rest, &sb);
    } else {
        mqb__strbuf_add(&sb, "trust: expected list, add KEY or remove FINGERPRINT");
    }
    return r;
}

// "/VERSION/SIG[/downgrade]": false when it is anything else.
static bool parse_image_extra(const char *extra, uint64_t *version, uint8_t sig[MQB_SIG_LEN],
                              bool *downgrade) {
    if (extra[0] != '/') {
        return false;
    }
    const char *v = extra + 1, *slash = strchr(v, '/');
    if (slash == NULL || !mqb__parse_u64(v, (size_t)(slash - v), version)) {
        return false;
    }
    const char *hex = slash + 1, *end = strchr(hex, '/');
    size_t hlen = end != NULL ? (size_t)(end - hex) : strlen(hex);
    if (!mqb__parse_hex(hex, hlen, sig, MQB_SIG_LEN)) {
        return false;
    }
    *downgrade = end != NULL;
    return end == NULL || strcmp(end, "/downgrade") == 0;
}

enum mqb_err mqb_auth_image_check(const uint8_t (*pubs)[MQB_PUBKEY_LEN], unsigned n,
                                  const uint8_t sha256[32], const char *extra, uint64_t recorded,
                                  mqb_auth_verify_fn verify, void *ctx, uint64_t *version) {
    uint8_t sig[MQB_SIG_LEN], head[64];
    bool downgrade = false;
    *version = recorded;
    if (n == 0) {
        return MQB_OK; // no release keys: any image
    }
    if (!parse_image_extra(extra, version, sig, &downgrade)) {
        *version = recorded;
        return MQB_ERR_IMAGE_UNSIGNED;
    }
    size_t hl = mqb_auth_image_head(head, sizeof(head), sha256, *version);
    bool ok = false;
    for (unsigned i = 0; i < n && !ok; i++) {
        ok = hl > 0 && verify(ctx, pubs[i], head, hl, sig);
    }
    if (!ok) {
        return MQB_ERR_IMAGE_SIG;
    }
    return *version < recorded && !downgrade ? MQB_ERR_DOWNGRADE : MQB_OK;
}
