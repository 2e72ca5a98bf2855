// The device-side command engine: dispatch of command messages, the put/get streams with
// their sequence rules, windows and hashes, and the replies. See include/mqb/engine.h for the
// contract and docs/protocol.md for the messages.
#include "mqb/engine.h"

#include <string.h>

#include "strbuf.h"

#define SHA256_HEX_LEN (2 * MQB_SHA256_LEN)

enum mqb_err mqb_engine_init(struct mqb_engine *e, const struct mqb_platform *plat, void *ctx,
                             const char *prefix, const char *agent) {
    size_t plen = strlen(prefix);
    if (plen > MQB_PREFIX_MAX) {
        return MQB_ERR_TOOBIG;
    }
    memset(e, 0, sizeof(*e));
    e->plat = plat;
    e->ctx = ctx;
    memcpy(e->prefix, prefix, plen + 1);
    e->startup = true;
    e->agent = agent;
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        e->xfers[i].kind = MQB_XFER_NONE;
        e->xfers[i].fh = -1;
    }
    return MQB_OK;
}

static void xfer_free(struct mqb_engine *e, struct mqb_xfer *x, bool commit) {
    if (x->fh >= 0 && x->kind == MQB_XFER_OTA) {
        e->plat->ota_close(e->ctx, x->fh, commit);
    } else if (x->fh >= 0) {
        e->plat->file_close(e->ctx, x->fh, commit);
    }
    if (x->kind == MQB_XFER_EVAL) {
        e->plat->eval_abort(e->ctx, x->id);
    }
    x->kind = MQB_XFER_NONE;
    x->fh = -1;
}

void mqb_engine_deinit(struct mqb_engine *e) {
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        if (e->xfers[i].kind != MQB_XFER_NONE) {
            xfer_free(e, &e->xfers[i], false);
        }
    }
}

unsigned mqb_engine_busy(const struct mqb_engine *e) {
    unsigned n = 0;
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        n += e->xfers[i].kind != MQB_XFER_NONE;
    }
    return n;
}

static unsigned slot_of(const struct mqb_engine *e, const struct mqb_xfer *x) {
    return (unsigned)(x - e->xfers);
}

static struct mqb_xfer *xfer_find(struct mqb_engine *e, const char *id) {
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        if (e->xfers[i].kind != MQB_XFER_NONE && strcmp(e->xfers[i].id, id) == 0) {
            return &e->xfers[i];
        }
    }
    return NULL;
}

static struct mqb_xfer *xfer_alloc(struct mqb_engine *e, enum mqb_xfer_kind kind, const char *id,
                                   const char *path, uint64_t now_ms) {
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        struct mqb_xfer *x = &e->xfers[i];
        if (x->kind == MQB_XFER_NONE) {
            memset(x, 0, sizeof(*x));
            x->kind = kind;
            x->fh = -1;
            strcpy(x->id, id); // length checked by mqb_topic_parse
            strcpy(x->path, path);
            mqb_seq_init(&x->in);
            x->last_ms = now_ms;
            return x;
        }
    }
    return NULL;
}

void mqb_engine_set_auth(struct mqb_engine *e, struct mqb_auth *auth) {
    e->auth = auth;
}

bool mqb_engine_signing(const struct mqb_engine *e) {
    return e->auth != NULL && e->auth->nkeys > 0 && e->plat->sig_verify != NULL &&
           e->plat->sig_sign != NULL;
}

// The chain of id's reply stream (allocated when alloc; the oldest is dropped when all are
// taken), NULL when none.
static struct mqb_chain *chain_of(struct mqb_engine *e, const char *id, bool alloc) {
    struct mqb_chain *free_one = NULL, *oldest = &e->chains[0];
    for (unsigned i = 0; i < MQB_AUTH_CHAINS; i++) {
        struct mqb_chain *c = &e->chains[i];
        if (c->used && strcmp(c->id, id) == 0) {
            return c;
        }
        free_one = !c->used ? c : free_one;
        oldest = c->age < oldest->age ? c : oldest;
    }
    if (!alloc) {
        return NULL;
    }
    struct mqb_chain *c = free_one != NULL ? free_one : oldest;
    c->used = true;
    c->age = ++e->chain_age;
    strcpy(c->id, id);
    e->plat->hash_init(e->ctx, MQB_MAX_XFERS + (unsigned)(c - e->chains));
    return c;
}

// What happens to a reply besides being published: chained into the signature of the next
// signed reply of its id, signed (a final reply), or neither (a get's data, which the signed
// hash of its last message covers).
enum reply_role { ROLE_CHAIN, ROLE_SIGN, ROLE_NONE };

// Publishes e->buf[0 .. len) on e->topic; hlen bytes of it are the header. When the engine
// signs, applies role (for id).
static enum mqb_err send_buf(struct mqb_engine *e, const char *id, size_t hlen, size_t len,
                             enum reply_role role) {
    if (!mqb_engine_signing(e) || e->plain || role == ROLE_NONE) {
        return e->plat->publish(e->ctx, e->topic, e->buf, len);
    }
    struct mqb_chain *c = chain_of(e, id, role == ROLE_CHAIN);
    unsigned slot = c != NULL ? MQB_MAX_XFERS + (unsigned)(c - e->chains) : 0;
    if (role == ROLE_CHAIN) {
        e->plat->hash_update(e->ctx, slot, e->buf + hlen, len - hlen);
        return e->plat->publish(e->ctx, e->topic, e->buf, len);
    }
    uint8_t chain[MQB_SHA256_LEN] = {0};
    if (c != NULL) {
        e->plat->hash_final(e->ctx, slot, chain);
        c->used = false;
    }
    size_t hl = mqb_auth_reply_head(e->head, sizeof(e->head), e->topic, e->buf, hlen, chain);
    if (hl == 0 ||
        e->plat->sig_sign(e->ctx, e->head, hl, e->buf + hlen, len - hlen, e->buf + len) != MQB_OK) {
        return MQB_ERR_IO;
    }
    memcpy(e->buf + len + MQB_SIG_LEN, MQB_AUTH_MAGIC, 4);
    return e->plat->publish(e->ctx, e->topic, e->buf, len + MQB_AUTH_TRAILER_LEN);
}

// Publishes e->buf[2 .. 2+len) with header (seq, last) on reply/out of id.
static enum mqb_err publish_buf(struct mqb_engine *e, const char *id, uint16_t seq, bool last,
                                size_t len, enum reply_role role) {
    enum mqb_err err = mqb_topic_reply(e->topic, sizeof(e->topic), e->prefix, false, id);
    if (err != MQB_OK) {
        return err;
    }
    mqb_hdr_encode(e->buf, seq, last);
    return send_buf(e, id, MQB_HDR_LEN, MQB_HDR_LEN + len, role);
}

enum mqb_err mqb_engine_reply_out(struct mqb_engine *e, const char *id, uint16_t seq, bool last,
                                  const uint8_t *data, size_t len) {
    if (len > MQB_CHUNK_MAX) {
        return MQB_ERR_TOOBIG;
    }
    if (len > 0) {
        memmove(e->buf + MQB_HDR_LEN, data, len);
    }
    return publish_buf(e, id, seq, last, len, last ? ROLE_SIGN : ROLE_CHAIN);
}

enum mqb_err mqb_engine_reply_err(struct mqb_engine *e, const char *id, const char *text,
                                  size_t len) {
    enum mqb_err err = mqb_topic_reply(e->topic, sizeof(e->topic), e->prefix, true, id);
    if (err != MQB_OK) {
        return err;
    }
    if (len > MQB_CHUNK_MAX) {
        len = MQB_CHUNK_MAX;
    }
    memmove(e->buf, text, len);
    return send_buf(e, id, 0, len, ROLE_SIGN);
}

enum mqb_err mqb_engine_publish_signed(struct mqb_engine *e, const char *topic,
                                       const uint8_t *payload, size_t len, size_t hlen) {
    if (len > MQB_HDR_LEN + MQB_CHUNK_MAX || hlen > len || strlen(topic) >= sizeof(e->topic)) {
        return MQB_ERR_TOOBIG;
    }
    strcpy(e->topic, topic);
    memmove(e->buf, payload, len);
    return send_buf(e, "", hlen, len, ROLE_SIGN);
}

static void reply_text(struct mqb_engine *e, const char *id, const char *text) {
    mqb_engine_reply_out(e, id, MQB_SEQ_MASK, true, (const uint8_t *)text, strlen(text));
}

// Replies "<what the error means>[: detail]" on reply/err.
static void reply_error(struct mqb_engine *e, const char *id, enum mqb_err err,
                        const char *detail) {
    char text[MQB_PATH_MAX + 96];
    struct mqb__strbuf sb;
    mqb__strbuf_init(&sb, text, sizeof(text));
    mqb__strbuf_add(&sb, mqb_strerror(err));
    if (detail != NULL && detail[0] != '\0') {
        mqb__strbuf_add(&sb, ": ");
        mqb__strbuf_add(&sb, detail);
    }
    mqb_engine_reply_err(e, id, text, sb.len);
}

// Replies "<error>: <before><limit><after>", a limit of this build in words.
static void reply_limit(struct mqb_engine *e, const char *id, enum mqb_err err, const char *before,
                        uint64_t limit, const char *after) {
    char detail[96];
    struct mqb__strbuf sb;
    mqb__strbuf_init(&sb, detail, sizeof(detail));
    mqb__strbuf_add(&sb, before);
    mqb__strbuf_add_u64(&sb, limit);
    mqb__strbuf_add(&sb, after);
    reply_error(e, id, err, detail);
}

// Fails a transfer: discards what it wrote and tells the host why.
static void xfer_fail(struct mqb_engine *e, struct mqb_xfer *x, enum mqb_err err) {
    char id[MQB_ID_MAX + 1];
    char path[MQB_PATH_MAX + 1];
    strcpy(id, x->id);
    strcpy(path, x->path);
    xfer_free(e, x, false);
    reply_error(e, id, err, path);
}

// Applies the sequence rules to one message of an incoming stream (put, xput, eval) and finds
// or opens its transfer. MQB_OK with *out set to accept the message.
static enum mqb_err stream_accept(struct mqb_engine *e, enum mqb_xfer_kind kind, const char *id,
                                  const char *path, const struct mqb_hdr *h, bool dup,
                                  uint64_t now_ms, struct mqb_xfer **out) {
    struct mqb_xfer *x = xfer_find(e, id);
    if (x == NULL) {
        if (h->seq != 0) {
            // No open stream for this id: a redelivery after it ended or failed, or its first
            // message was lost. A redelivery is dropped; anything else is a gap.
            if (dup) {
                return MQB_ERR_DUP;
            }
            reply_error(e, id, MQB_ERR_GAP, path);
            return MQB_ERR_GAP;
        }
        x = xfer_alloc(e, kind, id, path, now_ms);
        if (x == NULL) {
            reply_error(e, id, MQB_ERR_BUSY, path);
            return MQB_ERR_BUSY;
        }
    } else if (x->kind != kind) {
        reply_error(e, id, MQB_ERR_STATE, path);
        return MQB_ERR_STATE;
    }
    enum mqb_err err = mqb_seq_check(&x->in, h);
    if (err == MQB_ERR_GAP) {
        xfer_fail(e, x, MQB_ERR_GAP);
    }
    if (err != MQB_OK) {
        return err;
    }
    x->received++;
    x->last_ms = now_ms;
    *out = x;
    return MQB_OK;
}

static enum mqb_err put_first(struct mqb_engine *e, struct mqb_xfer *x, const uint8_t **data,
                              size_t *len) {
    if (x->kind == MQB_XFER_OTA) {
        // One image at a time: a new ota supersedes one under way (whose host is most likely
        // gone); the older one is discarded and its host told.
        for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
            if (&e->xfers[i] != x && e->xfers[i].kind == MQB_XFER_OTA) {
                xfer_fail(e, &e->xfers[i], MQB_ERR_BUSY);
            }
        }
        // The image's SHA-256 begins the topic tail (a release signature may follow).
        size_t n = strlen(x->path);
        if (n < SHA256_HEX_LEN || (n > SHA256_HEX_LEN && x->path[SHA256_HEX_LEN] != '/') ||
            !mqb__parse_hex(x->path, SHA256_HEX_LEN, x->sha256, MQB_SHA256_LEN)) {
            return MQB_ERR_MALFORMED;
        }
        enum mqb_err err = e->plat->hash_init(e->ctx, slot_of(e, x));
        return err != MQB_OK ? err : e->plat->ota_open(e->ctx, &x->fh);
    }
    (void)data;
    (void)len;
    if (x->kind == MQB_XFER_XPUT) {
        enum mqb_err err = e->plat->hash_init(e->ctx, slot_of(e, x));
        if (err != MQB_OK) {
            return err;
        }
    }
    return e->plat->file_open_write(e->ctx, x->path, &x->fh);
}

static bool verified(const struct mqb_xfer *x) {
    return x->kind == MQB_XFER_XPUT || x->kind == MQB_XFER_OTA;
}

static enum mqb_err put_last(struct mqb_engine *e, struct mqb_xfer *x) {
    if (verified(x)) {
        uint8_t got[MQB_SHA256_LEN];
        enum mqb_err err = e->plat->hash_final(e->ctx, slot_of(e, x), got);
        if (err != MQB_OK) {
            return err;
        }
        if (memcmp(got, x->sha256, MQB_SHA256_LEN) != 0) {
            return MQB_ERR_HASH;
        }
    }
    if (x->kind == MQB_XFER_OTA && e->plat->ota_check != NULL) {
        enum mqb_err err = e->plat->ota_check(e->ctx, x->sha256, x->path + SHA256_HEX_LEN);
        if (err != MQB_OK) {
            return err; // the caller discards the image
        }
    }
    int fh = x->fh;
    x->fh = -1;
    if (x->kind == MQB_XFER_OTA) {
        return e->plat->ota_close(e->ctx, fh, true);
    }
    return e->plat->file_close(e->ctx, fh, true);
}

static enum mqb_err on_put(struct mqb_engine *e, enum mqb_xfer_kind kind, const char *id,
                           const char *path, const struct mqb_hdr *h, const uint8_t *data,
                           size_t len, bool dup, uint64_t now_ms) {
    if (path[0] == '\0') {
        reply_error(e, id, MQB_ERR_BADPATH,
                    kind == MQB_XFER_OTA ? "ota needs the image's SHA-256 in the topic"
                                         : "put needs a file path in the topic");
        return MQB_ERR_BADPATH;
    }
    struct mqb_xfer *x;
    enum mqb_err err = stream_accept(e, kind, id, path, h, dup, now_ms, &x);
    if (err != MQB_OK) {
        return err;
    }
    if (x->received == 1) {
        err = put_first(e, x, &data, &len);
    }
    if (err == MQB_OK && kind == MQB_XFER_XPUT && h->last) {
        // The last message of an xput carries the SHA-256 of the whole file, in hex, and
        // no data: the host hashes while it sends.
        if (!mqb__parse_hex((const char *)data, len, x->sha256, MQB_SHA256_LEN)) {
            err = MQB_ERR_MALFORMED;
        }
        len = 0;
    }
    if (err == MQB_OK && len > 0) {
        err = e->plat->file_write(e->ctx, x->fh, data, len);
    }
    if (err == MQB_OK && verified(x) && len > 0) {
        err = e->plat->hash_update(e->ctx, slot_of(e, x), data, len);
    }
    if (err == MQB_OK && h->last) {
        err = put_last(e, x);
        if (err == MQB_OK) {
            char rid[MQB_ID_MAX + 1];
            strcpy(rid, x->id);
            xfer_free(e, x, false);
            reply_text(e, rid, "OK");
            return MQB_OK;
        }
    }
    if (err != MQB_OK) {
        xfer_fail(e, x, err);
        return err;
    }
    if (verified(x) && x->received % (MQB_WINDOW / 2) == 0) {
        // Flow control: acknowledge every half window ("SEQ n", n = index of this message),
        // which for ota is the original's "every 8th message".
        char ack[32];
        struct mqb__strbuf sb;
        mqb__strbuf_init(&sb, ack, sizeof(ack));
        mqb__strbuf_add(&sb, "SEQ ");
        mqb__strbuf_add_u64(&sb, x->received - 1);
        reply_text(e, id, ack);
    }
    return MQB_OK;
}

static enum mqb_err on_eval(struct mqb_engine *e, const char *id, const struct mqb_hdr *h,
                            const uint8_t *data, size_t len, bool dup, uint64_t now_ms) {
    if (h->seq == 0 && h->last && xfer_find(e, id) == NULL) {
        // The common case, one message: no transfer slot needed.
        return e->plat->eval(e->ctx, id, data, len, true, true);
    }
    struct mqb_xfer *x;
    enum mqb_err err = stream_accept(e, MQB_XFER_EVAL, id, "", h, dup, now_ms, &x);
    if (err != MQB_OK) {
        return err;
    }
    err = e->plat->eval(e->ctx, id, data, len, x->received == 1, h->last);
    if (h->last || err != MQB_OK) {
        // The platform owns the eval from here (or has reported its failure).
        x->kind = MQB_XFER_NONE;
    }
    return err;
}

// Parses the optional "CHUNK WINDOW" options of an xget.
static void xget_options(struct mqb_xfer *x, const uint8_t *data, size_t len) {
    const char *s = (const char *)data;
    const char *space = memchr(s, ' ', len);
    uint64_t chunk = MQB_CHUNK_MAX;
    uint64_t window = MQB_WINDOW;
    if (space != NULL) {
        mqb__parse_u64(s, (size_t)(space - s), &chunk);
        mqb__parse_u64(space + 1, len - (size_t)(space - s) - 1, &window);
    } else if (len > 0) {
        mqb__parse_u64(s, len, &chunk);
    }
    x->chunk = (uint32_t)(chunk < 256 ? 256 : chunk > MQB_CHUNK_MAX ? MQB_CHUNK_MAX : chunk);
    x->window = (uint32_t)(window < 1 ? 1 : window > 1024 ? 1024 : window);
}

static enum mqb_err on_get(struct mqb_engine *e, enum mqb_xfer_kind kind, const char *id,
                           const char *path, const uint8_t *data, size_t len, uint64_t now_ms) {
    if (xfer_find(e, id) != NULL) {
        return MQB_ERR_DUP; // a redelivered request for a stream already under way
    }
    struct mqb_xfer *x = xfer_alloc(e, kind, id, path, now_ms);
    if (x == NULL) {
        reply_error(e, id, MQB_ERR_BUSY, path);
        return MQB_ERR_BUSY;
    }
    // The original's chunk, or less where the chunk buffer is smaller (the original host
    // takes messages of any size).
    x->chunk = MQB_CHUNK_ORIG_GET < MQB_CHUNK_MAX ? MQB_CHUNK_ORIG_GET : MQB_CHUNK_MAX;
    if (kind == MQB_XFER_XGET) {
        xget_options(x, data, len);
    }
    uint64_t size = 0;
    enum mqb_err err =
        path[0] == '\0' ? MQB_ERR_BADPATH : e->plat->file_open_read(e->ctx, path, &x->fh, &size);
    if (err == MQB_OK && kind == MQB_XFER_XGET) {
        err = e->plat->hash_init(e->ctx, slot_of(e, x));
    }
    if (err != MQB_OK) {
        xfer_fail(e, x, err);
        return err;
    }
    // An xget's first message says how big the file is (for the host's progress bar).
    if (kind == MQB_XFER_XGET) {
        struct mqb__strbuf sb;
        mqb__strbuf_init(&sb, (char *)e->buf + MQB_HDR_LEN, 24);
        mqb__strbuf_add_u64(&sb, size);
        err = publish_buf(e, id, 0, false, sb.len, ROLE_NONE);
        if (err != MQB_OK) {
            xfer_fail(e, x, err);
            return err;
        }
        x->sent = 1;
    }
    return MQB_OK;
}

static enum mqb_err on_ack(struct mqb_engine *e, const char *id, const uint8_t *data, size_t len,
                           uint64_t now_ms) {
    struct mqb_xfer *x = xfer_find(e, id);
    uint64_t n;
    if (x == NULL || x->kind != MQB_XFER_XGET) {
        return MQB_ERR_DUP; // a late ack of a finished stream
    }
    if (!mqb__parse_u64((const char *)data, len, &n)) {
        xfer_fail(e, x, MQB_ERR_MALFORMED);
        return MQB_ERR_MALFORMED;
    }
    // Acks only move forward; a stale or reordered one is harmless.
    if (n > x->acked && n <= x->sent) {
        x->acked = (uint32_t)n;
    }
    x->last_ms = now_ms;
    return MQB_OK;
}

static enum mqb_err on_caps(struct mqb_engine *e, const char *id) {
    char text[256];
    struct mqb__strbuf sb;
    mqb__strbuf_init(&sb, text, sizeof(text));
    mqb__strbuf_add(&sb, "{\"proto\":");
    mqb__strbuf_add_u64(&sb, MQB_PROTO_VERSION);
    mqb__strbuf_add(&sb, ",\"agent\":\"");
    mqb__strbuf_add(&sb, e->agent != NULL ? e->agent : "mqb");
    mqb__strbuf_add(&sb, "\",\"chunk\":");
    mqb__strbuf_add_u64(&sb, MQB_CHUNK_MAX);
    mqb__strbuf_add(&sb, ",\"window\":");
    mqb__strbuf_add_u64(&sb, MQB_WINDOW);
    mqb__strbuf_add(&sb, ",\"xfers\":");
    mqb__strbuf_add_u64(&sb, MQB_MAX_XFERS);
    mqb__strbuf_add(&sb, mqb_engine_signing(e) ? ",\"signed\":true}" : "}");
    reply_text(e, id, text); // unsigned (asked without a signature, by any tool)
    return MQB_OK;
}

static void slice_copy(char *dst, struct mqb_slice s) {
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = '\0';
}

static enum mqb_err on_other(struct mqb_engine *e, const char *cmd, const char *id,
                             const char *tail, const uint8_t *data, size_t len) {
    enum mqb_err err = MQB_ERR_UNSUPPORTED;
    if (e->plat->command != NULL) {
        err = e->plat->command(e->ctx, cmd, id, tail, data, len);
    }
    if (err == MQB_ERR_UNSUPPORTED) {
        char text[MQB_CMD_MAX + 32];
        struct mqb__strbuf sb;
        mqb__strbuf_init(&sb, text, sizeof(text));
        mqb__strbuf_add(&sb, "Command '");
        mqb__strbuf_add(&sb, cmd);
        mqb__strbuf_add(&sb, "' not supported");
        mqb_engine_reply_err(e, id, text, sb.len);
    }
    return err;
}

// Checks the signature block at *data and steps past it (MQB_OK), or says why not.
static enum mqb_err auth_check(struct mqb_engine *e, const char *topic, const uint8_t *payload,
                               const uint8_t **data, size_t *dlen) {
    struct mqb_auth_block b;
    unsigned key;
    if (mqb_auth_block_decode(*data, *dlen, &b) != MQB_OK) {
        return MQB_ERR_AUTH;
    }
    enum mqb_err err = mqb_auth_precheck(e->auth, &b, &key);
    if (err != MQB_OK) {
        return err;
    }
    const uint8_t *d = *data + MQB_AUTH_BLOCK_LEN;
    size_t n = *dlen - MQB_AUTH_BLOCK_LEN;
    size_t hl = mqb_auth_cmd_head(e->head, sizeof(e->head), topic, payload, &b);
    if (hl == 0 ||
        e->plat->sig_verify(e->ctx, e->auth->keys[key].pub, e->head, hl, d, n, b.sig) != MQB_OK) {
        return MQB_ERR_AUTH_SIG;
    }
    mqb_auth_record(e->auth, key, b.counter);
    *data = d;
    *dlen = n;
    return MQB_OK;
}

// Refuses an unsigned or badly signed message, unsigned (its sender may be a tool that does
// not know signatures): a transfer it belongs to fails.
static void refuse(struct mqb_engine *e, const char *id, enum mqb_err err) {
    struct mqb_xfer *x = xfer_find(e, id);
    if (x != NULL) {
        xfer_fail(e, x, err);
    } else {
        reply_error(e, id, err, NULL);
    }
}

static enum mqb_err input(struct mqb_engine *e, const char *topic, const uint8_t *payload,
                          size_t len, bool dup, uint64_t now_ms) {
    struct mqb_topic t;
    enum mqb_err perr = mqb_topic_parse(e->prefix, topic, strlen(topic), &t);
    if ((perr != MQB_OK && perr != MQB_ERR_TOOBIG) || t.kind != MQB_TOPIC_CMD) {
        return MQB_ERR_MALFORMED;
    }
    // Right after start-up a redelivered command may be the one that crashed the board.
    if (e->startup && dup) {
        return MQB_ERR_DUP;
    }
    e->startup = false;
    char cmd[MQB_CMD_MAX + 1], id[MQB_ID_MAX + 1], tail[MQB_PATH_MAX + 1];
    slice_copy(cmd, t.cmd);
    slice_copy(id, t.id);
    slice_copy(tail, t.tail);
    if (perr == MQB_ERR_TOOBIG) {
        reply_limit(e, id, MQB_ERR_BADPATH, "longer than the board allows (", MQB_PATH_MAX,
                    " bytes)");
        return MQB_ERR_BADPATH;
    }
    struct mqb_hdr h;
    if (mqb_hdr_decode(payload, len, &h) != MQB_OK) {
        reply_error(e, id, MQB_ERR_MALFORMED, "missing the 2-byte header");
        return MQB_ERR_MALFORMED;
    }
    const uint8_t *data = payload + MQB_HDR_LEN;
    size_t dlen = len - MQB_HDR_LEN;
    if (mqb_engine_signing(e) && mqb_auth_required(cmd, &h)) {
        enum mqb_err aerr = auth_check(e, topic, payload, &data, &dlen);
        if (aerr != MQB_OK) {
            refuse(e, id, aerr);
            return aerr;
        }
        e->plain = false; // a signed command: its replies are signed
    } else if (mqb_engine_signing(e) && xfer_find(e, id) != NULL) {
        // The middle of a transfer that a signed message began (its acknowledgements): a
        // signed hash covers the data, and the host checks every reply of a signed command.
        e->plain = false;
    }
    if (mqb_hdr_is_single(&h)) {
        h.seq = 0; // a command in one message, as a single reply is written
    }
    if (dlen > MQB_CHUNK_MAX) {
        struct mqb_xfer *x = xfer_find(e, id);
        if (x != NULL) {
            xfer_fail(e, x, MQB_ERR_TOOBIG);
        } else {
            reply_limit(e, id, MQB_ERR_TOOBIG, "the board accepts at most ", MQB_CHUNK_MAX,
                        " data bytes");
        }
        return MQB_ERR_TOOBIG;
    }
    if (strcmp(cmd, "eval") == 0) {
        return on_eval(e, id, &h, data, dlen, dup, now_ms);
    } else if (strcmp(cmd, "put") == 0) {
        return on_put(e, MQB_XFER_PUT, id, tail, &h, data, dlen, dup, now_ms);
    } else if (strcmp(cmd, "xput") == 0) {
        return on_put(e, MQB_XFER_XPUT, id, tail, &h, data, dlen, dup, now_ms);
    } else if (strcmp(cmd, "get") == 0) {
        return on_get(e, MQB_XFER_GET, id, tail, data, dlen, now_ms);
    } else if (strcmp(cmd, "xget") == 0) {
        return on_get(e, MQB_XFER_XGET, id, tail, data, dlen, now_ms);
    } else if (strcmp(cmd, "ota") == 0 && e->plat->ota_open != NULL) {
        return on_put(e, MQB_XFER_OTA, id, tail, &h, data, dlen, dup, now_ms);
    } else if (strcmp(cmd, "ack") == 0) {
        return on_ack(e, id, data, dlen, now_ms);
    } else if (strcmp(cmd, "caps") == 0) {
        return on_caps(e, id);
    }
    return on_other(e, cmd, id, tail, data, dlen);
}

enum mqb_err mqb_engine_verify(struct mqb_engine *e, const char *topic, const uint8_t *payload,
                               size_t len, const uint8_t **data, size_t *dlen) {
    struct mqb_topic t;
    struct mqb_hdr h;
    char cmd[MQB_CMD_MAX + 1];
    if (mqb_topic_parse(e->prefix, topic, strlen(topic), &t) != MQB_OK || t.kind != MQB_TOPIC_CMD ||
        mqb_hdr_decode(payload, len, &h) != MQB_OK) {
        return MQB_ERR_MALFORMED;
    }
    slice_copy(cmd, t.cmd);
    *data = payload + MQB_HDR_LEN;
    *dlen = len - MQB_HDR_LEN;
    if (mqb_engine_signing(e) && mqb_auth_required(cmd, &h)) {
        return auth_check(e, topic, payload, data, dlen);
    }
    return MQB_OK;
}

enum mqb_err mqb_engine_input(struct mqb_engine *e, const char *topic, const uint8_t *payload,
                              size_t len, bool dup, uint64_t now_ms) {
    // Replies go unsigned until the message proved to be a signed command (then they answer
    // it): what anyone can send gets nothing signed back.
    e->plain = true;
    enum mqb_err err = input(e, topic, payload, len, dup, now_ms);
    e->plain = false;
    return err;
}

// Builds and publishes the next message of a get stream. Returns false when the stream ended
// (or failed) and its slot was freed.
static bool get_step(struct mqb_engine *e, struct mqb_xfer *x) {
    size_t n = 0;
    bool last = false;
    enum mqb_err err = MQB_OK;
    if (!x->eof) {
        err = e->plat->file_read(e->ctx, x->fh, e->buf + MQB_HDR_LEN, x->chunk, &n);
        if (err == MQB_OK && n > 0 && x->kind == MQB_XFER_XGET) {
            err = e->plat->hash_update(e->ctx, slot_of(e, x), e->buf + MQB_HDR_LEN, n);
        }
        x->eof = err == MQB_OK && n == 0;
    }
    if (err != MQB_OK) {
        xfer_fail(e, x, err);
        return false;
    }
    if (x->eof) {
        // The final message: empty for get, the file's SHA-256 in hex for xget.
        last = true;
        if (x->kind == MQB_XFER_XGET) {
            uint8_t sha[MQB_SHA256_LEN];
            struct mqb__strbuf sb;
            e->plat->hash_final(e->ctx, slot_of(e, x), sha);
            mqb__strbuf_init(&sb, (char *)e->buf + MQB_HDR_LEN, SHA256_HEX_LEN + 1);
            mqb__strbuf_add_hex(&sb, sha, MQB_SHA256_LEN);
            n = sb.len;
        }
    }
    err = publish_buf(e, x->id, (uint16_t)(x->sent & MQB_SEQ_MASK), last, n,
                      last ? ROLE_SIGN : ROLE_NONE);
    if (err != MQB_OK) {
        // A message the platform could not publish would be a silent hole in the file: the
        // stream fails instead, and the host is told (if that can be published).
        xfer_fail(e, x, err);
        return false;
    }
    x->sent++;
    if (last) {
        xfer_free(e, x, false);
        return false;
    }
    return true;
}

// Sends what the window and the outgoing queue allow, at most *budget messages.
static bool pump_get(struct mqb_engine *e, struct mqb_xfer *x, unsigned *budget) {
    while (*budget > 0) {
        if (x->window != 0 && x->sent >= x->acked + x->window) {
            return false;
        }
        if (e->plat->out_room(e->ctx) == 0) {
            return false;
        }
        (*budget)--;
        if (!get_step(e, x)) {
            return false;
        }
    }
    return true;
}

bool mqb_engine_pump(struct mqb_engine *e, uint64_t now_ms) {
    unsigned budget = 64;
    bool more = false;
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        struct mqb_xfer *x = &e->xfers[i];
        if (x->kind == MQB_XFER_NONE) {
            continue;
        }
        if (now_ms > x->last_ms &&
            now_ms - x->last_ms > MQB_XFER_IDLE_MS) { // a stale now: not idle
            xfer_fail(e, x, MQB_ERR_TIMEDOUT);
            continue;
        }
        if (x->kind == MQB_XFER_GET || x->kind == MQB_XFER_XGET) {
            uint32_t before = x->sent;
            more |= pump_get(e, x, &budget);
            if (x->kind != MQB_XFER_NONE && x->sent != before) {
                x->last_ms = now_ms;
            }
        }
    }
    return more;
}
