// The MQRepl wire format: message header, topics and sequence rules (see docs/protocol.md).
#include "mqb/wire.h"

#include <string.h>

#include "strbuf.h"

void mqb_hdr_encode(uint8_t out[MQB_HDR_LEN], uint16_t seq, bool last) {
    uint16_t v = (uint16_t)((seq & MQB_SEQ_MASK) | (last ? MQB_HDR_LAST : 0));
    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)(v & 0xFF);
}

enum mqb_err mqb_hdr_decode(const uint8_t *payload, size_t len, struct mqb_hdr *out) {
    if (payload == NULL || len < MQB_HDR_LEN) {
        return MQB_ERR_MALFORMED;
    }
    uint16_t v = (uint16_t)((payload[0] << 8) | payload[1]);
    out->seq = v & MQB_SEQ_MASK;
    out->last = (v & MQB_HDR_LAST) != 0;
    return MQB_OK;
}

bool mqb_hdr_is_single(const struct mqb_hdr *h) {
    return h->last && h->seq == MQB_SEQ_MASK;
}

// Splits off the next '/'-terminated level of [*p, end) into out; advances *p past the '/'.
// Returns false when no '/' follows.
static bool take_level(const char **p, const char *end, struct mqb_slice *out) {
    const char *slash = memchr(*p, '/', (size_t)(end - *p));
    if (slash == NULL) {
        return false;
    }
    out->ptr = *p;
    out->len = (size_t)(slash - *p);
    *p = slash + 1;
    return true;
}

static bool slice_is(const struct mqb_slice *s, const char *lit) {
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

// A topic level that names a command or id: non-empty, within its limit, no MQTT wildcards.
static bool level_ok(const struct mqb_slice *s, size_t max) {
    if (s->len == 0 || s->len > max) {
        return false;
    }
    return memchr(s->ptr, '+', s->len) == NULL && memchr(s->ptr, '#', s->len) == NULL;
}

static enum mqb_err parse_cmd(const char *p, const char *end, struct mqb_topic *out) {
    out->kind = MQB_TOPIC_CMD;
    if (!take_level(&p, end, &out->cmd) || !level_ok(&out->cmd, MQB_CMD_MAX)) {
        return MQB_ERR_MALFORMED;
    }
    // The id runs to the next '/' (then the tail follows) or to the end of the topic.
    if (!take_level(&p, end, &out->id)) {
        out->id.ptr = p;
        out->id.len = (size_t)(end - p);
        p = end;
    }
    if (!level_ok(&out->id, MQB_ID_MAX)) {
        return MQB_ERR_MALFORMED;
    }
    out->tail.ptr = p;
    out->tail.len = (size_t)(end - p);
    // The command and id are good, so the sender can be told what is wrong.
    if (out->tail.len > MQB_PATH_MAX) {
        out->tail.len = MQB_PATH_MAX;
        return MQB_ERR_TOOBIG;
    }
    return MQB_OK;
}

static enum mqb_err parse_reply(const char *p, const char *end, struct mqb_topic *out) {
    struct mqb_slice which;
    if (!take_level(&p, end, &which)) {
        return MQB_ERR_MALFORMED;
    }
    if (slice_is(&which, "out")) {
        out->kind = MQB_TOPIC_REPLY_OUT;
    } else if (slice_is(&which, "err")) {
        out->kind = MQB_TOPIC_REPLY_ERR;
    } else if (slice_is(&which, "busy")) {
        out->kind = MQB_TOPIC_REPLY_BUSY;
    } else if (slice_is(&which, "ask")) {
        out->kind = MQB_TOPIC_REPLY_ASK;
    } else if (slice_is(&which, "reset")) {
        out->kind = MQB_TOPIC_REPLY_RESET;
    } else {
        return MQB_ERR_MALFORMED;
    }
    out->cmd.ptr = p;
    out->cmd.len = 0;
    out->id.ptr = p;
    out->id.len = (size_t)(end - p);
    out->tail.ptr = end;
    out->tail.len = 0;
    if (memchr(p, '/', out->id.len) != NULL || !level_ok(&out->id, MQB_ID_MAX)) {
        return MQB_ERR_MALFORMED;
    }
    return MQB_OK;
}

enum mqb_err mqb_topic_parse(const char *prefix, const char *topic, size_t len,
                             struct mqb_topic *out) {
    size_t plen = strlen(prefix);
    static const char base[] = "/mqb/";
    size_t blen = sizeof(base) - 1;
    if (len < plen + blen || memcmp(topic, prefix, plen) != 0 ||
        memcmp(topic + plen, base, blen) != 0) {
        return MQB_ERR_MALFORMED;
    }
    const char *p = topic + plen + blen;
    const char *end = topic + len;
    struct mqb_slice kind;
    if (!take_level(&p, end, &kind)) {
        return MQB_ERR_MALFORMED;
    }
    if (slice_is(&kind, "cmd")) {
        return parse_cmd(p, end, out);
    }
    if (slice_is(&kind, "reply")) {
        return parse_reply(p, end, out);
    }
    return MQB_ERR_MALFORMED;
}

enum mqb_err mqb_topic_cmd(char *buf, size_t cap, const char *prefix, const char *cmd,
                           const char *id, const char *tail) {
    struct mqb__strbuf sb;
    mqb__strbuf_init(&sb, buf, cap);
    mqb__strbuf_add(&sb, prefix);
    mqb__strbuf_add(&sb, "/mqb/cmd/");
    mqb__strbuf_add(&sb, cmd);
    mqb__strbuf_add(&sb, "/");
    mqb__strbuf_add(&sb, id);
    if (tail != NULL) {
        mqb__strbuf_add(&sb, "/");
        mqb__strbuf_add(&sb, tail);
    }
    return mqb__strbuf_ok(&sb) ? MQB_OK : MQB_ERR_NOSPACE;
}

enum mqb_err mqb_topic_reply(char *buf, size_t cap, const char *prefix, bool is_err,
                             const char *id) {
    struct mqb__strbuf sb;
    mqb__strbuf_init(&sb, buf, cap);
    mqb__strbuf_add(&sb, prefix);
    mqb__strbuf_add(&sb, is_err ? "/mqb/reply/err/" : "/mqb/reply/out/");
    mqb__strbuf_add(&sb, id);
    return mqb__strbuf_ok(&sb) ? MQB_OK : MQB_ERR_NOSPACE;
}

void mqb_seq_init(struct mqb_seq *s) {
    s->next = 0;
    s->done = false;
}

enum mqb_err mqb_seq_check(struct mqb_seq *s, const struct mqb_hdr *h) {
    if (s->done) {
        return MQB_ERR_DUP;
    }
    // Distance ahead of the expected seq, modulo 2^15: 0 is in order, the upper half is
    // behind (a redelivery), the lower half is ahead (something was skipped).
    uint16_t ahead = (uint16_t)((h->seq - s->next) & MQB_SEQ_MASK);
    if (ahead == 0) {
        s->next = (uint16_t)((s->next + 1) & MQB_SEQ_MASK);
        s->done = h->last;
        return MQB_OK;
    }
    return ahead >= 0x4000 ? MQB_ERR_DUP : MQB_ERR_GAP;
}

uint32_t mqb_id_deadline(const char *id) {
    size_t n = 0;
    while (id[n] != '\0') {
        n++;
    }
    if (n < 10 || id[n - 9] != '.') {
        return 0;
    }
    uint32_t v = 0;
    for (size_t i = n - 8; i < n; i++) {
        char c = id[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return 0;
        }
        v = v << 4 | (uint32_t)d;
    }
    return v;
}
