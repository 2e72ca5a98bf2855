// Internal: a bounded string builder over a caller's buffer, for the core's topics and
// messages (the core has no printf). Overflow is sticky and reported by mqb__strbuf_ok.
#ifndef MQB_STRBUF_H
#define MQB_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mqb__strbuf {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

void mqb__strbuf_init(struct mqb__strbuf *sb, char *buf, size_t cap);
void mqb__strbuf_addn(struct mqb__strbuf *sb, const char *s, size_t n);
void mqb__strbuf_add(struct mqb__strbuf *sb, const char *s);
void mqb__strbuf_add_u64(struct mqb__strbuf *sb, uint64_t v);
void mqb__strbuf_add_hex(struct mqb__strbuf *sb, const uint8_t *bytes, size_t n);
bool mqb__strbuf_ok(const struct mqb__strbuf *sb);

// Parses a decimal number from [s, s+n); false when empty, not all digits, or overflow.
bool mqb__parse_u64(const char *s, size_t n, uint64_t *out);
// Parses 2*n hex digits into bytes; false on any non-hex digit or wrong length.
bool mqb__parse_hex(const char *s, size_t slen, uint8_t *out, size_t n);

#endif
