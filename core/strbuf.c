// Internal bounded string building and number parsing for the core (no printf, no malloc).
#include "strbuf.h"

#include <string.h>

void mqb__strbuf_init(struct mqb__strbuf *sb, char *buf, size_t cap) {
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->overflow = cap == 0;
    if (cap > 0) {
        buf[0] = '\0';
    }
}

void mqb__strbuf_addn(struct mqb__strbuf *sb, const char *s, size_t n) {
    if (sb->overflow) {
        return;
    }
    if (n >= sb->cap - sb->len) {
        sb->overflow = true;
        return;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void mqb__strbuf_add(struct mqb__strbuf *sb, const char *s) {
    mqb__strbuf_addn(sb, s, strlen(s));
}

void mqb__strbuf_add_u64(struct mqb__strbuf *sb, uint64_t v) {
    char tmp[21];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    mqb__strbuf_addn(sb, tmp + i, sizeof(tmp) - i);
}

void mqb__strbuf_add_hex(struct mqb__strbuf *sb, const uint8_t *bytes, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        char pair[2] = {digits[bytes[i] >> 4], digits[bytes[i] & 15]};
        mqb__strbuf_addn(sb, pair, 2);
    }
}

bool mqb__strbuf_ok(const struct mqb__strbuf *sb) {
    return !sb->overflow;
}

bool mqb__parse_u64(const char *s, size_t n, uint64_t *out) {
    uint64_t v = 0;
    if (n == 0 || n > 19) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool mqb__parse_hex(const char *s, size_t slen, uint8_t *out, size_t n) {
    if (slen != 2 * n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]);
        int lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}
