// mqrepld's keys: the board key, the authorized keys and the trust command (trust.h).
#define _GNU_SOURCE
#include "trust.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../sigkey/sigkey.h"

#define BOARD_KEY "board_key"
#define AUTHORIZED "authorized_keys"

static void path_of(const struct trust *t, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", t->dir, name);
}

static int board_key(struct trust *t) {
    char path[4200], err[512];
    path_of(t, BOARD_KEY, path, sizeof(path));
    if (access(path, F_OK) != 0) { // first start: the key is made here and stays here
        EVP_PKEY *k = sigkey_generate();
        if (k == NULL || sigkey_save(k, path, err, sizeof(err)) != 0) {
            fprintf(stderr, "mqrepld: board key: %s\n", k == NULL ? "cannot generate" : err);
            EVP_PKEY_free(k);
            return -1;
        }
        EVP_PKEY_free(k);
    }
    t->board = sigkey_load(path, err, sizeof(err));
    if (t->board == NULL || sigkey_public(t->board, t->pub) != 0) {
        fprintf(stderr, "mqrepld: board key: %s\n", err);
        return -1;
    }
    return 0;
}

// Reads authorized_keys into t->auth (keys only; the replay windows start empty).
static int read_authorized(struct trust *t) {
    char path[4200], line[SIGKEY_LINE_MAX];
    path_of(t, AUTHORIZED, path, sizeof(path));
    FILE *f = fopen(path, "re");
    struct stat st;
    t->auth.nkeys = 0;
    if (f == NULL) {
        return errno == ENOENT ? 0 : -1;
    }
    if (fstat(fileno(f), &st) != 0 || (st.st_mode & 022) != 0) {
        fprintf(stderr, "mqrepld: '%s' may be changed by other users (mode %04o): chmod 644 it\n",
                path, (unsigned)(st.st_mode & 07777));
        fclose(f);
        return -1;
    }
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        uint8_t pub[MQB_PUBKEY_LEN], id[MQB_KEYID_LEN];
        n++;
        if (line[strspn(line, " \t\r\n")] == '\0' || line[strspn(line, " \t")] == '#') {
            continue;
        }
        if (sigkey_parse(line, pub) != 0) {
            fprintf(stderr, "mqrepld: %s:%d: not a key line (mqb-p256 BASE64 comment)\n", path, n);
            continue;
        }
        sigkey_id(pub, id);
        if (mqb_auth_add_key(&t->auth, id, pub) != MQB_OK) {
            fprintf(stderr, "mqrepld: %s: more than %d keys, the rest ignored\n", path,
                    MQB_AUTH_KEYS_MAX);
            break;
        }
    }
    fclose(f);
    return 0;
}

// Parses the authorized keys for verifying (again after the table changed).
static void parse_keys(struct trust *t) {
    for (unsigned i = 0; i < MQB_AUTH_KEYS_MAX; i++) {
        EVP_PKEY_free(t->parsed[i]);
        t->parsed[i] = i < t->auth.nkeys ? sigkey_from_public(t->auth.keys[i].pub) : NULL;
    }
}

int trust_open(struct trust *t, const char *dir, const char *boot_id) {
    memset(t, 0, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "%s", dir);
    for (unsigned i = 0; i < MQB_BOOTID_LEN; i++) {
        unsigned v = 0;
        sscanf(boot_id + 2 * i, "%2x", &v);
        t->auth.boot_id[i] = (uint8_t)v;
    }
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "mqrepld: --keys %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 022) != 0) {
        fprintf(stderr, "mqrepld: --keys %s: not a directory only its owner may change\n", dir);
        return -1;
    }
    if (board_key(t) != 0 || read_authorized(t) != 0) {
        return -1;
    }
    parse_keys(t);
    char fpr[SIGKEY_FPR_LEN];
    sigkey_fingerprint(t->pub, fpr);
    fprintf(stderr, "mqrepld: board key %s (%s/" BOARD_KEY ")\n", fpr, dir);
    if (t->auth.nkeys == 0) {
        fprintf(stderr,
                "mqrepld: no authorized keys in %s/" AUTHORIZED ": anyone who can publish "
                "on the broker controls this board (docs/security.md)\n",
                dir);
    }
    return 0;
}

void trust_close(struct trust *t) {
    EVP_PKEY_free(t->board);
    t->board = NULL;
    t->auth.nkeys = 0;
    parse_keys(t);
}

bool trust_verify(struct trust *t, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                  size_t hlen, const uint8_t *data, size_t dlen, const uint8_t sig[MQB_SIG_LEN]) {
    for (unsigned i = 0; i < t->auth.nkeys; i++) {
        if (memcmp(t->auth.keys[i].pub, pub, MQB_PUBKEY_LEN) == 0) {
            return sigkey_verify_key(t->parsed[i], head, hlen, data, dlen, sig);
        }
    }
    return false;
}

// Writes the key table to authorized_keys: a temporary file, fsync, rename.
static bool write_authorized(struct trust *t, char *out, size_t cap) {
    char path[4200], tmp[4300];
    path_of(t, AUTHORIZED, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    bool ok = f != NULL;
    for (unsigned i = 0; ok && i < t->auth.nkeys; i++) {
        char line[SIGKEY_LINE_MAX];
        ok = sigkey_line(t->auth.keys[i].pub, NULL, line, sizeof(line)) == 0 &&
             fprintf(f, "%s\n", line) > 0;
    }
    ok = f != NULL && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = (f != NULL ? fclose(f) == 0 : (fd >= 0 && close(fd) == 0)) && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        snprintf(out, cap, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return ok;
}

static int ops_parse(void *ctx, const char *line, uint8_t pub[MQB_PUBKEY_LEN]) {
    (void)ctx;
    return sigkey_parse(line, pub);
}

static void ops_sha256(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], uint8_t out[32]) {
    (void)ctx;
    EVP_Digest(pub, MQB_PUBKEY_LEN, out, NULL, EVP_sha256(), NULL);
}

static void ops_b64(void *ctx, const uint8_t *in, size_t n, char *out) {
    (void)ctx;
    sigkey_b64(in, n, out);
}

static const struct mqb_auth_keyops keyops = {NULL, ops_parse, ops_sha256, ops_b64};

bool trust_command(struct trust *t, const char *data, size_t len, char *out, size_t cap) {
    struct mqb_auth before = t->auth;
    enum mqb_trust_result r = mqb_auth_trust(&t->auth, &keyops, data, len, out, cap);
    if (r == MQB_TRUST_CHANGED) {
        if (!write_authorized(t, out, cap)) {
            t->auth = before;
            return false;
        }
        parse_keys(t);
    }
    return r != MQB_TRUST_FAILED;
}

// Reads a key file's lines into pubs (at most max); returns how many.
static int read_keys(const char *path, uint8_t (*pubs)[MQB_PUBKEY_LEN], int max) {
    char line[SIGKEY_LINE_MAX];
    FILE *f = fopen(path, "re");
    int n = 0;
    while (f != NULL && n < max && fgets(line, sizeof(line), f) != NULL) {
        n += sigkey_parse(line, pubs[n]) == 0;
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

static bool verify_release(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                           size_t hlen, const uint8_t sig[MQB_SIG_LEN]) {
    (void)ctx;
    return sigkey_verify(pub, head, hlen, NULL, 0, sig);
}

enum mqb_err trust_image(struct trust *t, const uint8_t sha256[32], const char *extra) {
    char path[4200];
    uint8_t pubs[MQB_AUTH_KEYS_MAX][MQB_PUBKEY_LEN];
    uint64_t version = 0;
    path_of(t, "release_keys", path, sizeof(path));
    int n = t->board != NULL ? read_keys(path, pubs, MQB_AUTH_KEYS_MAX) : 0;
    path_of(t, "image_version", path, sizeof(path));
    FILE *f = n > 0 ? fopen(path, "re") : NULL;
    unsigned long long recorded = 0;
    if (f != NULL) {
        if (fscanf(f, "%llu", &recorded) != 1) {
            recorded = 0;
        }
        fclose(f);
    }
    enum mqb_err err =
        mqb_auth_image_check((const uint8_t(*)[MQB_PUBKEY_LEN])pubs, (unsigned)n, sha256, extra,
                             recorded, verify_release, NULL, &version);
    if (err != MQB_OK || n == 0) {
        return err;
    }
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    f = fopen(tmp, "we");
    bool written = f != NULL && fprintf(f, "%llu\n", (unsigned long long)version) > 0;
    written = f != NULL && fflush(f) == 0 && fsync(fileno(f)) == 0 && written;
    written = f != NULL && fclose(f) == 0 && written;
    return written && rename(tmp, path) == 0 ? MQB_OK : MQB_ERR_IO;
}

char *trust_sign_status(struct trust *t, const char *topic, const char *json) {
    size_t len = strlen(json);
    uint8_t head[MQB_AUTH_HEAD_MAX], sig[MQB_SIG_LEN], zero[32] = {0};
    char b64[4 * ((MQB_SIG_LEN + 2) / 3) + 1];
    size_t hl = mqb_auth_reply_head(head, sizeof(head), topic, NULL, 0, zero);
    if (hl == 0 || len < 2 || json[len - 1] != '}' ||
        sigkey_sign(t->board, head, hl, (const uint8_t *)json, len, sig) != 0) {
        return strdup(json);
    }
    sigkey_b64(sig, sizeof(sig), b64);
    char *out = malloc(len + sizeof(b64) + 16);
    sprintf(out, "%.*s,\"sig\":\"%s\"}", (int)(len - 1), json, b64);
    return out;
}
