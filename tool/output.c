// mqboard's output: error messages (stderr, or the --json document), sizes for humans, and
// the progress bar of long transfers.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

void tool_error(struct tool *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mqboard: ", t->err);
    vfprintf(t->err, fmt, ap);
    fputc('\n', t->err);
    va_end(ap);
}

// The length of the well-formed UTF-8 sequence of a non-ASCII character at s (at most len
// bytes), or 0: no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629).
static size_t utf8_len(const unsigned char *s, size_t len) {
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
               : s[0] >= 0xe0 && s[0] <= 0xef ? 3
               : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                              : 0;
    lo = s[0] == 0xe0 ? 0xa0 : s[0] == 0xf0 ? 0x90 : lo;
    hi = s[0] == 0xed ? 0x9f : s[0] == 0xf4 ? 0x8f : hi;
    if (n == 0 || n > len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    return n;
}

// A C1 control (U+0080..U+009F: CSI, OSC, ... for some terminals) in its UTF-8 form.
static bool is_c1(const unsigned char *s, size_t n) {
    return n == 2 && s[0] == 0xc2 && s[1] < 0xa0;
}

// Writes len bytes of s with control characters other than newline and tab, and bytes that
// are not UTF-8, escaped (\n, \x1b, \xff): text from a board never drives the terminal.
static void put_escaped(FILE *f, const char *s, size_t len, bool keep_nl) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = u[i];
        size_t n = c >= 0x80 ? utf8_len(u + i, len - i) : 1;
        if ((c == '\n' || c == '\t') && keep_nl) {
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c < 0x20 || c == 0x7f || n == 0 || is_c1(u + i, n)) {
            fprintf(f, "\\x%02x", c);
        } else {
            fwrite(u + i, 1, n, f);
            i += n - 1;
        }
    }
}

void tool_prefixed_line(FILE *to, const char *prefix, const char *line, size_t len) {
    put_escaped(to, prefix, strlen(prefix), false);
    fputs(": ", to);
    put_escaped(to, line, len, false);
    fputc('\n', to);
}

char *tool_escape(const char *s) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    put_escaped(f, s, strlen(s), false);
    fclose(f);
    return buf;
}

char *tool_json_string(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        size_t n = u[i] >= 0x80 ? utf8_len(u + i, len - i) : 1;
        if (u[i] == '"' || u[i] == '\\') {
            fprintf(f, "\\%c", u[i]);
        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            fprintf(f, "\\u%04x", u[i]); // NUL too: nothing is cut
        } else if (n == 0) {
            fputs("\\ufffd", f); // not UTF-8: the replacement character, as Python's "replace"
        } else {
            fwrite(u + i, 1, n, f);
            i += n - 1;
        }
    }
    fputc('"', f);
    fclose(f);
    return buf;
}

// s with every byte that is not part of well-formed UTF-8 replaced by U+FFFD (malloc'd), or
// NULL when s is well-formed.
static char *utf8_clean(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s), i = 0;
    while (i < len && (u[i] < 0x80 || utf8_len(u + i, len - i) > 0)) {
        i += u[i] < 0x80 ? 1 : utf8_len(u + i, len - i);
    }
    if (i == len) {
        return NULL;
    }
    char *out = malloc(3 * len + 1), *o = out;
    for (i = 0; i < len;) {
        size_t n = u[i] < 0x80 ? 1 : utf8_len(u + i, len - i);
        memcpy(o, n > 0 ? s + i : "\xef\xbf\xbd", n > 0 ? n : 3);
        o += n > 0 ? n : 3;
        i += n > 0 ? n : 1;
    }
    *o = '\0';
    return out;
}

void tool_json_clean(cJSON *j) {
    for (cJSON *c = j; c != NULL; c = c->next) {
        char *fixed = c->string != NULL ? utf8_clean(c->string) : NULL;
        if (fixed != NULL) { // a key from a board (boards --json: its prefix)
            if (!(c->type & cJSON_StringIsConst)) {
                free(c->string);
            }
            c->string = fixed;
            c->type &= ~cJSON_StringIsConst;
        }
        fixed = cJSON_IsString(c) && c->valuestring != NULL ? utf8_clean(c->valuestring) : NULL;
        if (fixed != NULL) {
            cJSON_SetValuestring(c, fixed);
            free(fixed);
        }
        tool_json_clean(c->child);
    }
}

// A stream that keeps at most cap bytes in memory and counts the rest (--json output).
static ssize_t bounded_write(void *cookie, const char *p, size_t n) {
    struct bounded *b = cookie;
    size_t take = b->len + n > b->cap ? b->cap - b->len : n;
    if (take > 0) {
        b->buf = realloc(b->buf, b->len + take + 1);
        memcpy(b->buf + b->len, p, take);
        b->len += take;
        b->buf[b->len] = '\0';
    }
    b->dropped += n - take;
    return (ssize_t)n;
}

FILE *tool_bounded_stream(struct bounded *b, size_t cap) {
    *b = (struct bounded){.cap = cap};
    cookie_io_functions_t io = {.write = bounded_write};
    return fopencookie(b, "w", io);
}

int report_board_error(struct tool *t, const struct reply *r) {
    // One style with mqboard's own errors ("mqboard: rm: ..."), except for the traceback of
    // the user's own code, which is shown as Python prints it.
    const char *cmd = t->command;
    bool code = cmd != NULL &&
                (strcmp(cmd, "eval") == 0 || strcmp(cmd, "exec") == 0 || strcmp(cmd, "run") == 0 ||
                 strcmp(cmd, "repl") == 0 || strcmp(cmd, "mount") == 0);
    if (cmd != NULL && !code) {
        fprintf(t->err, "mqboard: %s: ", cmd);
    }
    // The text comes from the board: no terminal escapes reach the user's terminal.
    put_escaped(t->err, (const char *)r->data, r->len, true);
    if (r->len == 0 || r->data[r->len - 1] != '\n') {
        fputc('\n', t->err);
    }
    return EXIT_BOARD;
}

const char *human_size(double bytes, char *buf, size_t cap) {
    static const char units[] = "BKMGTP";
    int u = 0;
    while (bytes >= 1024 && u < 5) {
        bytes /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(buf, cap, "%.0f", bytes);
    } else {
        snprintf(buf, cap, bytes < 10 ? "%.1f%c" : "%.0f%c", bytes, units[u]);
    }
    return buf;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void progress_begin(struct tool *t, struct progress *p, const char *label, uint64_t total) {
    memset(p, 0, sizeof(*p));
    p->on = !t->opts.quiet && !t->opts.json && isatty(STDERR_FILENO);
    p->label = label;
    p->total = total;
    p->start = now_s();
}

static void draw(struct progress *p, double now) {
    char done[16], rate_s[16];
    double secs = now - p->start;
    double rate = secs > 0 ? (double)p->done / secs : 0;
    // More may arrive than was announced (a file that grows while it is read).
    uint64_t total = p->total > p->done ? p->total : p->done;
    int pct = total ? (int)(100.0 * (double)p->done / (double)total) : 100;
    int width = 30, fill = pct * width / 100;
    char bar[64];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    double eta = rate > 0 ? (double)(total - p->done) / rate : 0;
    fprintf(stderr, "\r%-20.20s [%s] %3d%% %7s %7s/s ETA %02d:%02d ", p->label, bar, pct,
            human_size((double)p->done, done, sizeof(done)),
            human_size(rate, rate_s, sizeof(rate_s)), (int)eta / 60, (int)eta % 60);
}

void progress_update(struct progress *p, uint64_t done) {
    p->done = done;
    double now = now_s();
    // Only transfers that last more than a moment get a bar; redraw at most 10 times a second.
    if (p->on && now - p->start > 0.5 && now - p->last_draw > 0.1) {
        p->last_draw = now;
        draw(p, now);
    }
}

void progress_end(struct progress *p) {
    if (p->on && p->last_draw > 0) {
        draw(p, now_s());
        fputc('\n', stderr);
    }
}
