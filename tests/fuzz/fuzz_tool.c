// libFuzzer target: mqboard's parsers of untrusted input (caps, status, listing lines, df,
// board paths, config-file lines). The input is handed to each of them.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

// True when some '/'-separated component of p is exactly "..".
static bool has_dotdot(const char *p) {
    for (const char *c = p;;) {
        const char *end = strchr(c, '/');
        size_t n = end != NULL ? (size_t)(end - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            return true;
        }
        if (end == NULL) {
            return false;
        }
        c = end + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    struct board_caps caps = {0};
    if (parse_caps(data, size, &caps) &&
        (caps.chunk < 256 || caps.chunk > 65536 || caps.window < 2 || caps.window > 1024)) {
        abort();
    }
    uint64_t n;
    if (parse_number(data, size, "SEQ ", &n) && (size < 5 || size > 23)) {
        abort();
    }
    struct board_status st;
    parse_status(data, size, &st);
    size_t body;
    char sig[96];
    if (parse_status_sig(data, size, &body, sig) && (body >= size || strlen(sig) != 88)) {
        abort(); // the signed part lies inside the status, the signature is 88 characters
    }
    struct rentry e;
    if (parse_entry(s, &e)) {
        const char *sub = remote_sub(e.path, "/lib");
        if (sub != NULL && has_dotdot(sub)) {
            abort(); // remote_sub must never hand out a ".." component
        }
        free(e.path);
    }
    double v[5];
    (void)parse_statvfs(s, v);
    char *norm = board_normalize(s);
    if (has_dotdot(norm)) {
        abort();
    }
    free(norm);
    (void)topic_safe(s);
    char *key = NULL, *value = NULL;
    char *line = strdup(s);
    (void)parse_conf_line(line, &key, &value);
    free(line);
    free(s);
    return 0;
}
