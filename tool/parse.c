// Parsers of untrusted input on the host side (see parse.h).
#define _GNU_SOURCE
#include "parse.h"

#include <ctype.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqb/config.h"

bool parse_number(const uint8_t *data, size_t len, const char *prefix, uint64_t *out) {
    size_t plen = strlen(prefix);
    if (len <= plen || len - plen > 19 || memcmp(data, prefix, plen) != 0) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = plen; i < len; i++) {
        if (data[i] < '0' || data[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(data[i] - '0');
    }
    *out = v;
    return true;
}

bool parse_caps(const uint8_t *data, size_t len, struct board_caps *caps) {
    cJSON *j = cJSON_ParseWithLength((const char *)data, len);
    const cJSON *proto = cJSON_GetObjectItemCaseSensitive(j, "proto");
    const cJSON *chunk = cJSON_GetObjectItemCaseSensitive(j, "chunk");
    const cJSON *window = cJSON_GetObjectItemCaseSensitive(j, "window");
    bool ok = cJSON_IsNumber(proto) && cJSON_IsNumber(chunk) && cJSON_IsNumber(window) &&
              proto->valuedouble >= 2 && proto->valuedouble < 1000 && chunk->valuedouble >= 256 &&
              window->valuedouble >= 2;
    if (ok) {
        caps->proto = (int)proto->valuedouble;
        caps->chunk =
            chunk->valuedouble > MQB_CHUNK_MAX ? MQB_CHUNK_MAX : (size_t)chunk->valuedouble;
        caps->window = window->valuedouble > 1024 ? 1024 : (unsigned)window->valuedouble;
    }
    cJSON_Delete(j);
    return ok;
}

void parse_status(const uint8_t *data, size_t len, struct board_status *st) {
    cJSON *j = cJSON_ParseWithLength((const char *)data, len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *bt = cJSON_GetObjectItemCaseSensitive(j, "boot_time");
    const cJSON *bi = cJSON_GetObjectItemCaseSensitive(j, "boot_id");
    st->online = -1;
    st->since = 0;
    st->boot_id[0] = '\0';
    st->slot = st->pending = -1;
    st->resetting = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "resetting"));
    const cJSON *sl = cJSON_GetObjectItemCaseSensitive(j, "slot");
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(j, "image");
    if (cJSON_IsString(s)) {
        st->slot = cJSON_IsNumber(sl) && (sl->valuedouble == 0 || sl->valuedouble == 1)
                       ? (int)sl->valuedouble
                       : -1;
        st->pending = !cJSON_IsString(img)                       ? -1
                      : strcmp(img->valuestring, "pending") == 0 ? 1
                      : strcmp(img->valuestring, "valid") == 0   ? 0
                                                                 : -1;
        st->online = strcmp(s->valuestring, "online") == 0    ? 1
                     : strcmp(s->valuestring, "offline") == 0 ? 0
                                                              : -1;
        st->since = cJSON_IsNumber(bt) && bt->valuedouble > 0 && bt->valuedouble < 1e11
                        ? bt->valuedouble
                        : 0;
        if (cJSON_IsString(bi) && strlen(bi->valuestring) < sizeof(st->boot_id)) {
            snprintf(st->boot_id, sizeof(st->boot_id), "%s", bi->valuestring);
        }
    }
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(j, "key");
    st->key[0] = '\0';
    if (cJSON_IsString(key) && strlen(key->valuestring) < sizeof(st->key)) {
        snprintf(st->key, sizeof(st->key), "%s", key->valuestring);
    }
    st->signed_only = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "signed"));
    cJSON_Delete(j);
}

bool parse_status_sig(const uint8_t *data, size_t len, size_t *body_len, char sig_b64[96]) {
    static const char member[] = ",\"sig\":\"";
    const size_t mlen = sizeof(member) - 1, blen = 88; // base64 of 64 bytes
    if (len < mlen + blen + 2 || memcmp(data + len - 2, "\"}", 2) != 0) {
        return false;
    }
    size_t at = len - 2 - blen - mlen;
    if (memcmp(data + at, member, mlen) != 0) {
        return false;
    }
    for (size_t i = 0; i < blen; i++) {
        char c = (char)data[at + mlen + i];
        if (!(isalnum((unsigned char)c) || c == '+' || c == '/' || c == '=')) {
            return false;
        }
    }
    memcpy(sig_b64, data + at + mlen, blen);
    sig_b64[blen] = '\0';
    *body_len = at;
    return true;
}

bool parse_entry(const char *line, struct rentry *e) {
    cJSON *j = cJSON_Parse(line);
    const cJSON *p = cJSON_GetArrayItem(j, 0), *d = cJSON_GetArrayItem(j, 1),
                *sz = cJSON_GetArrayItem(j, 2), *sha = cJSON_GetArrayItem(j, 3);
    bool ok = cJSON_IsArray(j) && cJSON_IsString(p) && cJSON_IsNumber(d) && cJSON_IsNumber(sz);
    if (ok) {
        memset(e, 0, sizeof(*e));
        e->path = strdup(p->valuestring);
        e->dir = d->valuedouble != 0;
        e->size = sz->valuedouble >= 0 && sz->valuedouble < 1e18 ? (uint64_t)sz->valuedouble : 0;
        if (cJSON_IsString(sha) && strlen(sha->valuestring) < sizeof(e->sha)) {
            snprintf(e->sha, sizeof(e->sha), "%s", sha->valuestring);
        }
    }
    cJSON_Delete(j);
    return ok;
}

bool parse_statvfs(const char *line, double v[5]) {
    cJSON *j = cJSON_Parse(line);
    bool ok = cJSON_IsArray(j);
    for (int i = 0; ok && i < 5; i++) {
        const cJSON *x = cJSON_GetArrayItem(j, i);
        ok = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < 1e18;
        v[i] = ok ? x->valuedouble : 0;
    }
    cJSON_Delete(j);
    return ok;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) {
        *--e = '\0';
    }
    return s;
}

enum conf_line parse_conf_line(char *line, char **key, char **value) {
    char *s = trim(line);
    if (*s == '#' || *s == ';' || *s == '\0') {
        return CONF_NONE;
    }
    if (*s == '[') {
        char *end = strchr(s, ']');
        if (end == NULL) {
            return CONF_BAD;
        }
        *end = '\0';
        *key = s + 1;
        return CONF_SECTION;
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        return CONF_BAD;
    }
    *eq = '\0';
    *key = trim(s);
    *value = trim(eq + 1);
    return CONF_SETTING;
}

char *board_normalize(const char *path) {
    size_t n = strlen(path);
    char *out = malloc(n + 2), *copy = strdup(path), *save = NULL;
    size_t len = 0;
    bool abs = path[0] == '/';
    for (char *c = strtok_r(copy, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0) {
            continue;
        }
        if (strcmp(c, "..") == 0) {
            char *slash = len > 0 ? memrchr(out, '/', len) : NULL;
            len = slash != NULL ? (size_t)(slash - out) : 0;
            continue;
        }
        if (len > 0 || abs) {
            out[len++] = '/';
        }
        memcpy(out + len, c, strlen(c));
        len += strlen(c);
    }
    if (len == 0) {
        out[len++] = abs ? '/' : '.';
    }
    out[len] = '\0';
    free(copy);
    return out;
}

bool topic_safe(const char *path) {
    for (const char *c = path; *c != '\0'; c++) {
        if (*c == '+' || *c == '#' || (unsigned char)*c < 0x20) {
            return false;
        }
    }
    return true;
}

// The part of a listed board path below the listed directory, checked: the board's listing
// is untrusted, so an entry must lie under REMOTE and have no "", "." or ".." component.
const char *remote_sub(const char *path, const char *remote) {
    size_t rlen = strlen(remote);
    while (rlen > 1 && remote[rlen - 1] == '/') {
        rlen--;
    }
    if (strncmp(path, remote, rlen) != 0 || (path[rlen] != '/' && rlen > 1)) {
        return NULL;
    }
    const char *sub = path + rlen + (path[rlen] == '/');
    for (const char *c = sub;;) {
        const char *end = strchrnul(c, '/');
        size_t n = (size_t)(end - c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) {
            return NULL;
        }
        if (*end == '\0') {
            return sub;
        }
        c = end + 1;
    }
}
