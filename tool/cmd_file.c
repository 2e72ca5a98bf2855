// mqboard's file transfers: put and get, flow-controlled and hash-verified against our agent
// (xput/xget), plain put/get against a board running the original code.
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

#define SHA256_HEX 64

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", b[i]);
    }
}

// SHA-256 of a whole open file, in hex; rewinds it.
static int file_sha256(FILE *f, char out[SHA256_HEX + 1]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t buf[65536], md[32];
    size_t n;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        EVP_DigestUpdate(ctx, buf, n);
    }
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    hex(md, sizeof(md), out);
    int bad = ferror(f);
    rewind(f);
    return bad ? EXIT_LOCAL : EXIT_OK;
}

// Handles a reply that arrives during a put: an error ends it, "SEQ n" acknowledges,
// "OK" completes it. *acked counts the messages acknowledged.
static int put_reply(const struct reply *r, uint32_t *acked, bool *done) {
    if (r->is_err) {
        return report_board_error(r);
    }
    if (r->len > 4 && memcmp(r->data, "SEQ ", 4) == 0) {
        uint32_t n = (uint32_t)strtoul((const char *)r->data + 4, NULL, 10);
        if (n + 1 > *acked) {
            *acked = n + 1;
        }
        return EXIT_OK;
    }
    if (r->len == 2 && memcmp(r->data, "OK", 2) == 0) {
        *done = true;
        return EXIT_OK;
    }
    fprintf(stderr, "mqboard: unexpected reply from the board: %.*s\n", (int)r->len,
            (const char *)r->data);
    return EXIT_BOARD;
}

// Streams f to the board path remote. Extended boards get xput (hash first, windowed);
// original boards get put in 1400-byte chunks.
static int put_stream(struct session *s, FILE *f, uint64_t size, const char *remote,
                      const struct board_caps *caps) {
    bool ext = caps->proto >= 2;
    size_t chunk = ext ? caps->chunk : MQB_CHUNK_ORIG_PUT;
    uint32_t window = ext ? caps->window : UINT32_MAX;
    uint32_t total = (uint32_t)((size + chunk - 1) / chunk) + (ext ? 1 : 0);
    if (total == 0) {
        total = 1; // an empty file still takes one (last) message
    }
    int code = session_begin(s, ext ? "xput" : "put");
    uint8_t *buf = malloc(chunk);
    uint32_t sent = 0, acked = 0;
    bool done = false;
    if (ext && code == EXIT_OK) {
        char sha[SHA256_HEX + 1];
        code = file_sha256(f, sha);
        if (code == EXIT_OK) {
            code = session_send(s, remote, 0, total == 1, (const uint8_t *)sha, SHA256_HEX);
            sent = 1;
        }
    }
    while (code == EXIT_OK && !done) {
        while (code == EXIT_OK && sent < total && sent < acked + window) {
            size_t n = fread(buf, 1, chunk, f);
            if (ferror(f)) {
                fprintf(stderr, "mqboard: read error: %s\n", strerror(errno));
                code = EXIT_LOCAL;
                break;
            }
            code =
                session_send(s, remote, (uint16_t)(sent & MQB_SEQ_MASK), sent + 1 == total, buf, n);
            sent++;
            // Look at replies without waiting, so that an early error stops the stream.
            struct reply r;
            if (code == EXIT_OK && session_recv(s, 0, &r) == EXIT_OK) {
                code = put_reply(&r, &acked, &done);
            }
        }
        struct reply r;
        if (code == EXIT_OK && !done) {
            code = session_recv(s, -1, &r);
            if (code == EXIT_OK) {
                code = put_reply(&r, &acked, &done);
            }
        }
    }
    free(buf);
    session_end(s);
    return code;
}

// Puts the local file local at the board path remote ("dir/" puts it into dir).
static int put_one(struct tool *t, const char *local, const char *remote) {
    char path[MQB_PATH_MAX + 1];
    size_t rlen = strlen(remote);
    if (rlen > 0 && remote[rlen - 1] == '/') {
        char *copy = strdup(local);
        snprintf(path, sizeof(path), "%s%s", remote, basename(copy));
        free(copy);
        remote = path;
    }
    FILE *f = fopen(local, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "mqboard: cannot read '%s': %s\n", local,
                f == NULL ? strerror(errno) : "not a regular file");
        if (f != NULL) {
            fclose(f);
        }
        return EXIT_LOCAL;
    }
    struct board_caps caps;
    int code = session_connect(t);
    if (code == EXIT_OK) {
        code = session_caps(&t->session, &caps);
    }
    if (code == EXIT_OK) {
        code = put_stream(&t->session, f, (uint64_t)st.st_size, remote, &caps);
    }
    fclose(f);
    return code;
}

int cmd_put(struct tool *t, int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: mqboard put LOCAL... REMOTE\n");
        return EXIT_USAGE;
    }
    const char *remote = argv[argc - 1];
    if (argc > 3 && remote[strlen(remote) - 1] != '/') {
        fprintf(stderr, "mqboard: several files go into a directory: end REMOTE with '/'\n");
        return EXIT_USAGE;
    }
    for (int i = 1; i < argc - 1; i++) {
        int code = put_one(t, argv[i], remote);
        if (code != EXIT_OK) {
            return code;
        }
    }
    return EXIT_OK;
}

// Where get writes: stdout, or a temporary file renamed over the target at the end.
struct sink {
    FILE *f;
    const char *target; // NULL for stdout
    char tmp[4096];
    EVP_MD_CTX *md;
};

static int sink_open(struct sink *k, const char *local) {
    memset(k, 0, sizeof(*k));
    k->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(k->md, EVP_sha256(), NULL);
    if (local == NULL) {
        k->f = stdout;
        return EXIT_OK;
    }
    k->target = local;
    if (snprintf(k->tmp, sizeof(k->tmp), "%s.mqb-part", local) >= (int)sizeof(k->tmp)) {
        fprintf(stderr, "mqboard: local path too long: %s\n", local);
        return EXIT_LOCAL;
    }
    k->f = fopen(k->tmp, "wb");
    if (k->f == NULL) {
        fprintf(stderr, "mqboard: cannot write '%s': %s\n", k->tmp, strerror(errno));
        return EXIT_LOCAL;
    }
    return EXIT_OK;
}

static int sink_write(struct sink *k, const uint8_t *data, size_t len) {
    EVP_DigestUpdate(k->md, data, len);
    if (len > 0 && fwrite(data, 1, len, k->f) != len) {
        fprintf(stderr, "mqboard: write error: %s\n", strerror(errno));
        return EXIT_LOCAL;
    }
    return EXIT_OK;
}

// Finishes the sink: on success the file replaces the target; otherwise it is removed.
static int sink_close(struct sink *k, int code) {
    EVP_MD_CTX_free(k->md);
    if (k->target == NULL || k->f == NULL) {
        fflush(stdout);
        return code;
    }
    if (fclose(k->f) != 0 && code == EXIT_OK) {
        fprintf(stderr, "mqboard: write error on '%s': %s\n", k->tmp, strerror(errno));
        code = EXIT_LOCAL;
    }
    if (code == EXIT_OK && rename(k->tmp, k->target) != 0) {
        fprintf(stderr, "mqboard: cannot write '%s': %s\n", k->target, strerror(errno));
        code = EXIT_LOCAL;
    }
    if (code != EXIT_OK) {
        unlink(k->tmp);
    }
    return code;
}

static int check_hash(struct sink *k, const struct reply *r) {
    uint8_t md[32];
    char want[SHA256_HEX + 1];
    EVP_DigestFinal_ex(k->md, md, NULL);
    hex(md, sizeof(md), want);
    if (r->len != SHA256_HEX || memcmp(r->data, want, SHA256_HEX) != 0) {
        fprintf(stderr, "mqboard: hash mismatch: the file arrived damaged; nothing written\n");
        return EXIT_BOARD;
    }
    return EXIT_OK;
}

// Receives a get (or xget) stream into the sink, acknowledging as the board's window needs.
static int get_stream(struct session *s, struct sink *k, bool ext, unsigned window) {
    struct mqb_seq seq;
    mqb_seq_init(&seq);
    uint32_t received = 0;
    for (;;) {
        struct reply r;
        int code = session_recv(s, -1, &r);
        if (code != EXIT_OK) {
            return code;
        }
        if (r.is_err) {
            return report_board_error(&r);
        }
        enum mqb_err err = mqb_seq_check(&seq, &r.hdr);
        if (err == MQB_ERR_DUP) {
            continue;
        }
        if (err != MQB_OK) {
            fprintf(stderr, "mqboard: a message of the file was lost; nothing written\n");
            return EXIT_BOARD;
        }
        received++;
        if (r.hdr.last) {
            return ext ? check_hash(k, &r) : sink_write(k, r.data, r.len);
        }
        // An xget's first message is the file size, not data.
        if (!(ext && received == 1) && (code = sink_write(k, r.data, r.len)) != EXIT_OK) {
            return code;
        }
        if (ext && received % (window / 2) == 0) {
            char ack[24];
            int n = snprintf(ack, sizeof(ack), "%u", received);
            session_send_cmd(s, "ack", NULL, (const uint8_t *)ack, (size_t)n);
        }
    }
}

static int get_one(struct tool *t, const char *remote, const char *local) {
    struct session *s = &t->session;
    struct board_caps caps;
    struct sink k;
    char path[4096];
    struct stat st;
    if (local != NULL && strcmp(local, "-") == 0) {
        local = NULL;
    }
    if (local != NULL && stat(local, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *copy = strdup(remote);
        int n = snprintf(path, sizeof(path), "%s/%s", local, basename(copy));
        free(copy);
        if (n >= (int)sizeof(path)) {
            fprintf(stderr, "mqboard: local path too long: %s\n", local);
            return EXIT_LOCAL;
        }
        local = path;
    }
    int code = session_connect(t);
    if (code == EXIT_OK) {
        code = session_caps(s, &caps);
    }
    if (code != EXIT_OK) {
        return code;
    }
    bool ext = caps.proto >= 2;
    code = sink_open(&k, local);
    if (code == EXIT_OK) {
        code = session_begin(s, ext ? "xget" : "get");
    }
    if (code == EXIT_OK) {
        char opts[48];
        int n = ext ? snprintf(opts, sizeof(opts), "%zu %u", caps.chunk, caps.window) : 0;
        code = session_send(s, remote, 0, true, (const uint8_t *)opts, (size_t)n);
    }
    if (code == EXIT_OK) {
        code = get_stream(s, &k, ext, caps.window);
    }
    session_end(s);
    return sink_close(&k, code);
}

int cmd_get(struct tool *t, int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: mqboard get REMOTE [LOCAL|-]\n");
        return EXIT_USAGE;
    }
    return get_one(t, argv[1], argc == 3 ? argv[2] : NULL);
}
