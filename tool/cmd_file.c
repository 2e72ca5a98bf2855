// mqboard's file transfers: put, get and cat, flow-controlled and hash-verified against our
// agent (xput/xget), and put/get plus a hash check by eval against a board running the
// original code. -r copies trees.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remote.h"
#include "tool.h"

#define SHA256_HEX 64

static char *join(const char *a, const char *b);
static char *base_of(const char *path);
static bool is_dir(const char *p);

static mode_t current_umask(void) {
    mode_t m = umask(0);
    umask(m);
    return m;
}

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", b[i]);
    }
}

int file_sha256(FILE *f, char out[SHA256_HEX + 1]) {
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

static void take_sha(void *ctx, const char *text, void *json) {
    (void)text;
    const cJSON *sha = cJSON_GetArrayItem(json, 1);
    if (cJSON_IsString(sha)) {
        snprintf(ctx, SHA256_HEX + 1, "%s", sha->valuestring);
    }
}

// The SHA-256 of a board file, computed on the board (for boards without xput/xget).
static int remote_sha(struct tool *t, const char *path, char out[SHA256_HEX + 1]) {
    char *p = py_str(path);
    size_t n = 3 * strlen(p) + 128;
    char *prog = malloc(n);
    snprintf(prog, n, "try:print(ujson.dumps([%s,_sha(%s)]))\nexcept OSError as e:_err(e,%s)", p, p,
             p);
    out[0] = '\0';
    int code = remote_run(t, "sha256", prog, take_sha, out);
    free(prog);
    free(p);
    return code;
}

// Handles a reply that arrives during a put: an error ends it, "SEQ n" acknowledges,
// "OK" completes it. *acked counts the messages acknowledged.
static int put_reply(struct tool *t, const struct reply *r, uint32_t *acked, bool *done,
                     bool *isdir, bool ota) {
    if (r->is_err && ota && memmem(r->data, r->len, "not supported", 13)) {
        char *prefix = tool_escape(t->opts.prefix);
        tool_error(t,
                   "ota: board '%s' cannot take a firmware image: it does not run from A/B "
                   "slots (start mqrepld with --slots DIR; a MicroPython board needs a firmware "
                   "with an OTA partition)",
                   prefix);
        free(prefix);
        return EXIT_BOARD;
    }
    if (r->is_err && isdir != NULL &&
        (memmem(r->data, r->len, "is a directory", 14) || memmem(r->data, r->len, "EISDIR", 6))) {
        *isdir = true; // the caller puts into the directory instead, as cp does
        return EXIT_BOARD;
    }
    if (r->is_err) {
        return report_board_error(t, r);
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
    tool_error(t, "unexpected reply from the board: %.*s", (int)r->len, (const char *)r->data);
    return EXIT_BOARD;
}

// Streams f to the board: cmd is "xput" (hash first, windowed), "ota" (hash in the tail,
// windowed) or "put" (the original: 1400-byte chunks, no acknowledgements).
static int stream_up(struct tool *t, FILE *f, uint64_t size, const char *cmd, const char *tail,
                     const struct board_caps *caps, const char *label, bool *isdir) {
    struct session *s = &t->session;
    bool xput = strcmp(cmd, "xput") == 0, windowed = strcmp(cmd, "put") != 0;
    size_t chunk = xput ? caps->chunk : strcmp(cmd, "ota") == 0 ? 4096 : MQB_CHUNK_ORIG_PUT;
    if (strcmp(cmd, "ota") == 0 && caps->proto >= 2) {
        chunk = caps->chunk;
    }
    uint32_t window = !windowed ? UINT32_MAX : caps->proto >= 2 ? caps->window : 16;
    // xput ends with a message that holds only the hash.
    uint32_t total = (uint32_t)((size + chunk - 1) / chunk) + (xput ? 1 : 0);
    total = total == 0 ? 1 : total; // an empty file still takes one (last) message
    int code = session_begin(s, cmd);
    uint8_t *buf = malloc(chunk);
    uint32_t sent = 0, acked = 0;
    uint64_t bytes = 0;
    bool done = false;
    struct progress pg;
    progress_begin(t, &pg, label, size);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (code == EXIT_OK && !done) {
        while (code == EXIT_OK && sent < total && sent < acked + window) {
            size_t n = 0;
            if (xput && sent + 1 == total) {
                // The last message: the SHA-256 of what was sent, hashed on the way.
                uint8_t digest[32];
                EVP_DigestFinal_ex(md, digest, NULL);
                hex(digest, sizeof(digest), (char *)buf);
                n = SHA256_HEX;
            } else {
                n = fread(buf, 1, chunk, f);
                EVP_DigestUpdate(md, buf, n);
                bytes += n;
            }
            if (ferror(f)) {
                tool_error(t, "read error: %s", strerror(errno));
                code = EXIT_LOCAL;
                break;
            }
            code =
                session_send(s, tail, (uint16_t)(sent & MQB_SEQ_MASK), sent + 1 == total, buf, n);
            sent++;
            progress_update(&pg, bytes);
            // Look at replies without waiting, so that an early error stops the stream.
            struct reply r;
            if (code == EXIT_OK && session_recv(s, 0, &r) == EXIT_OK) {
                code = put_reply(t, &r, &acked, &done, isdir, strcmp(cmd, "ota") == 0);
            }
        }
        struct reply r;
        if (code == EXIT_OK && !done) {
            code = session_recv(s, -1, &r);
            code = code == RECV_INTERRUPT ? EXIT_INTERRUPTED : code;
            if (code == EXIT_OK) {
                code = put_reply(t, &r, &acked, &done, isdir, strcmp(cmd, "ota") == 0);
            }
        }
    }
    progress_end(&pg);
    EVP_MD_CTX_free(md);
    free(buf);
    if (code != EXIT_OK && sent > 0 && sent < total && code != EXIT_CONN) {
        // Abandoned half way (Ctrl-C, a signal, a local error): a message with a seq gap
        // makes the board fail the stream now, and remove its temporary file, rather than
        // after a minute of silence. The original board fails a gap the same way.
        session_send(s, tail, (uint16_t)((sent + 1) & MQB_SEQ_MASK), true, NULL, 0);
        session_flush(s);
    }
    session_end(s);
    return code;
}

static int open_local(struct tool *t, const char *local, FILE **f, uint64_t *size) {
    struct stat st;
    *f = fopen(local, "rb");
    if (*f == NULL || fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        tool_error(t, "cannot read '%s': %s", local,
                   *f == NULL ? strerror(errno) : "not a regular file");
        if (*f != NULL) {
            fclose(*f);
        }
        return EXIT_LOCAL;
    }
    *size = (uint64_t)st.st_size;
    return EXIT_OK;
}

// Puts one file. into_dir_ok: a REMOTE that is a directory on the board receives the file
// under its own name (as cp does).
static int put_one(struct tool *t, const char *local, const char *remote, bool into_dir_ok) {
    FILE *f;
    uint64_t size;
    struct board_caps caps;
    if (!topic_safe(remote)) {
        tool_error(t,
                   "%s: a board path cannot contain '+', '#' or control characters (MQTT "
                   "topics carry it)",
                   remote);
        return EXIT_USAGE;
    }
    int code = open_local(t, local, &f, &size);
    if (code != EXIT_OK) {
        return code;
    }
    code = session_connect(t);
    if (code == EXIT_OK) {
        code = session_caps(&t->session, &caps);
    }
    bool isdir = false;
    if (code == EXIT_OK) {
        code =
            stream_up(t, f, size, caps.proto >= 2 ? "xput" : "put", remote, &caps, remote, &isdir);
    }
    if (isdir) {
        char *b = base_of(local), *into = join(remote, b);
        fclose(f);
        code = into_dir_ok ? put_one(t, local, into, false) : EXIT_BOARD;
        if (!into_dir_ok) {
            tool_error(t, "%s: is a directory", remote);
        }
        free(b);
        free(into);
        return code;
    }
    // An original board cannot verify a put itself: compare the hashes afterwards.
    if (code == EXIT_OK && caps.proto < 2) {
        char want[SHA256_HEX + 1], got[SHA256_HEX + 1];
        rewind(f); // the stream read it to the end
        code = file_sha256(f, want);
        if (code == EXIT_OK) {
            code = remote_sha(t, remote, got);
        }
        if (code == EXIT_OK && strcmp(want, got) != 0) {
            tool_error(t, "%s: the board's copy differs from the local file (hash mismatch)",
                       remote);
            code = EXIT_BOARD;
        }
    }
    fclose(f);
    return code;
}

int put_file(struct tool *t, const char *local, const char *remote) {
    return put_one(t, local, remote, false);
}

// What the status said before an update (the evidence of a rollout).
struct board_seen {
    int slot, pending;
    char boot_id[40];
};

static void seen_now(const struct session *s, struct board_seen *b) {
    b->slot = s->slot;
    b->pending = s->pending;
    snprintf(b->boot_id, sizeof(b->boot_id), "%s", s->boot_id);
}

static cJSON *seen_json(const struct board_seen *b) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "slot", b->slot);
    cJSON_AddStringToObject(j, "image", b->pending == 1 ? "pending" : "valid");
    cJSON_AddStringToObject(j, "boot_id", b->boot_id);
    return j;
}

static bool status_shows_slot(const struct session *s, const void *unused) {
    (void)unused;
    return s->online == 1 && s->slot >= 0 && s->boot_id[0] != '\0';
}

// The update is decided: a new boot that runs the other slot with its image confirmed
// (updated), or a new boot back on the old slot (rolled back).
static bool update_decided(const struct session *s, const void *ctx) {
    const struct board_seen *before = ctx;
    return s->online == 1 && s->boot_id[0] != '\0' && strcmp(s->boot_id, before->boot_id) != 0 &&
           (s->slot == before->slot || s->pending == 0);
}

// ota --confirm: reset into the new image and wait until the board has marked it valid, or
// rolled back to the old one. Prints the outcome with the status before and after.
static int confirm_update(struct tool *t, const struct board_seen *before, double wait_s) {
    struct session *s = &t->session;
    char *reset[] = {"reset", "--no-wait", NULL};
    int code = cmd_reset(t, 2, reset);
    code = code != EXIT_OK ? code : session_watch(s, wait_s, update_decided, before);
    struct board_seen after;
    seen_now(s, &after);
    const char *outcome = code == RECV_INTERRUPT                   ? "interrupted"
                          : code == EXIT_TIMEOUT && s->online == 0 ? "offline"
                          : code != EXIT_OK                        ? "failed"
                          : s->slot == before->slot                ? "rolled back"
                                                                   : "updated";
    code = code == RECV_INTERRUPT ? EXIT_INTERRUPTED
           : code != EXIT_OK      ? code
           : outcome[0] == 'u'    ? EXIT_OK
                                  : EXIT_BOARD;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "outcome", outcome);
    cJSON_AddItemToObject(r, "before", seen_json(before));
    cJSON_AddItemToObject(r, "after", seen_json(&after));
    t->result = r;
    if (!t->opts.json) {
        fprintf(code == EXIT_OK ? t->out : t->err, "%s: slot %d -> %d, image %s, boot %s -> %s%s\n",
                outcome, before->slot, after.slot, after.pending == 1 ? "pending" : "valid",
                before->boot_id, after.boot_id,
                code == EXIT_TIMEOUT ? " (not decided in time: --wait)" : "");
    }
    return code;
}

int cmd_ota(struct tool *t, int argc, char **argv) {
    bool confirm = t->opts.canary > 0, downgrade = false;
    double wait_s = 120;
    const char *image = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--confirm") == 0) {
            confirm = true;
        } else if (strcmp(argv[i], "--allow-downgrade") == 0) {
            downgrade = true;
        } else if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc) {
            char *end;
            wait_s = strtod(argv[++i], &end);
            image = *end != '\0' || !(wait_s > 0 && wait_s <= 86400) ? NULL : image;
            argc = *end != '\0' || !(wait_s > 0 && wait_s <= 86400) ? 0 : argc;
        } else if (image == NULL && argv[i][0] != '-') {
            image = argv[i];
        } else {
            argc = 0;
        }
    }
    if (image == NULL || argc == 0) {
        fprintf(stderr,
                "usage: mqboard ota [--confirm] [--wait SECONDS] [--allow-downgrade] IMAGE\n");
        return EXIT_USAGE;
    }
    FILE *f;
    uint64_t size;
    struct board_caps caps;
    char sha[SHA256_HEX + 1];
    int code = open_local(t, image, &f, &size);
    if (code != EXIT_OK) {
        return code;
    }
    code = file_sha256(f, sha);
    char tail[SHA256_HEX + 256];
    if (code == EXIT_OK) {
        code = keys_image_tail(image, sha, downgrade, tail, sizeof(tail));
    }
    if (code == EXIT_OK) {
        code = session_connect(t);
    }
    struct board_seen before;
    if (code == EXIT_OK && confirm) { // the evidence starts with the status (it may come late)
        code = session_present(&t->session);
        session_watch(&t->session, 3.0, status_shows_slot, NULL);
    }
    seen_now(&t->session, &before);
    if (code == EXIT_OK && confirm && (before.slot < 0 || before.boot_id[0] == '\0')) {
        tool_error(t, "ota --confirm needs a board whose status shows its slot (mqrepld --slots)");
        code = EXIT_BOARD;
    }
    if (code == EXIT_OK) {
        code = session_caps(&t->session, &caps);
    }
    if (code == EXIT_OK) {
        code = stream_up(t, f, size, "ota", tail, &caps, "ota", NULL);
    }
    fclose(f);
    if (code == EXIT_OK && confirm) {
        return confirm_update(t, &before, wait_s);
    }
    if (code == EXIT_OK && !t->opts.json) {
        fprintf(t->out, "OTA done: the new image boots at the next reset (mqboard reset)\n");
    }
    return code;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *a, const char *b) {
    char *r;
    size_t n = strlen(a);
    return asprintf(&r, "%s%s%s", a, n > 0 && a[n - 1] == '/' ? "" : "/", b) < 0 ? NULL : r;
}

static char *base_of(const char *path) {
    char *copy = strdup(path);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') {
        copy[--n] = '\0';
    }
    char *b = strdup(basename(copy));
    free(copy);
    return b;
}

// Tree copies go on past a file they cannot copy (a name a topic cannot carry, a symlink
// out of the tree), name it, and fail at the end, as rsync does.
struct tree_copy {
    char root_real[PATH_MAX]; // the local tree's real path: symlinks may not leave it
    int code;                 // EXIT_OK, or the first error
};

static void tree_note(struct tree_copy *tc, int code) {
    tc->code = tc->code == EXIT_OK ? code : tc->code;
}

// True when a local path, symlinks followed, stays beneath the tree being copied.
static bool local_inside(const struct tree_copy *tc, const char *path) {
    char real[PATH_MAX];
    size_t n = strlen(tc->root_real);
    return realpath(path, real) != NULL && strncmp(real, tc->root_real, n) == 0 &&
           (real[n] == '/' || real[n] == '\0');
}

// Copies a local tree to the board: directories are created by the puts' parents.
static int put_tree(struct tool *t, struct tree_copy *tc, const char *local, const char *remote) {
    DIR *d = opendir(local);
    if (d == NULL) {
        tool_error(t, "cannot read directory '%s': %s", local, strerror(errno));
        return EXIT_LOCAL;
    }
    int code = EXIT_OK;
    struct dirent *e;
    while (code == EXIT_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char *l = join(local, e->d_name), *r = join(remote, e->d_name);
        if (!local_inside(tc, l)) {
            tool_error(t, "%s: a symlink out of the tree: skipped", l);
            tree_note(tc, EXIT_LOCAL);
        } else if (!topic_safe(r)) { // named, skipped, and the copy fails at the end
            tool_error(t,
                       "%s: a board path cannot contain '+', '#' or control characters "
                       "(MQTT topics carry it): skipped",
                       r);
            tree_note(tc, EXIT_BOARD);
        } else if (is_dir(l)) {
            code = put_tree(t, tc, l, r);
        } else {
            code = put_file(t, l, r);
        }
        free(l);
        free(r);
    }
    closedir(d);
    return code;
}

// rsync's rule: "DIR/" copies the contents of DIR into REMOTE, "DIR" copies DIR itself
// (REMOTE/DIR).
static int put_dir(struct tool *t, const char *local, const char *remote) {
    struct tree_copy tc = {.code = EXIT_OK};
    if (realpath(local, tc.root_real) == NULL) {
        tool_error(t, "cannot read '%s': %s", local, strerror(errno));
        return EXIT_LOCAL;
    }
    size_t n = strlen(local);
    char *b = base_of(local);
    char *target = n > 0 && local[n - 1] == '/' ? strdup(remote) : join(remote, b);
    int code = put_tree(t, &tc, local, target);
    free(b);
    free(target);
    return code != EXIT_OK ? code : tc.code;
}

int cmd_put(struct tool *t, int argc, char **argv) {
    bool recursive = argc > 1 && strcmp(argv[1], "-r") == 0;
    argc -= recursive;
    argv += recursive;
    if (argc < 3) {
        fprintf(stderr, "usage: mqboard put [-r] LOCAL... REMOTE\n");
        return EXIT_USAGE;
    }
    const char *remote = argv[argc - 1];
    bool into_dir = remote[strlen(remote) - 1] == '/';
    if (argc > 3 && !into_dir) {
        tool_error(t, "several files go into a directory: end REMOTE with '/'");
        return EXIT_USAGE;
    }
    int code = EXIT_OK;
    for (int i = 1; code == EXIT_OK && i < argc - 1; i++) {
        if (is_dir(argv[i]) && !recursive) {
            tool_error(t, "'%s' is a directory (use put -r)", argv[i]);
            code = EXIT_USAGE;
        } else if (is_dir(argv[i])) {
            code = put_dir(t, argv[i], remote);
        } else {
            char *b = base_of(argv[i]);
            char *target = into_dir ? join(remote, b) : strdup(remote);
            code = put_one(t, argv[i], target, !into_dir);
            free(b);
            free(target);
        }
    }
    return code;
}

// Where get writes: a stream (stdout), or a temporary file renamed over the target at the end.
struct sink {
    FILE *f;
    const char *target; // NULL for a stream
    char *tmp;
    EVP_MD_CTX *md;
};

static int sink_open(struct tool *t, struct sink *k, const char *local) {
    memset(k, 0, sizeof(*k));
    k->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(k->md, EVP_sha256(), NULL);
    if (local == NULL) {
        k->f = t->out;
        return EXIT_OK;
    }
    k->target = local;
    // A fresh temporary file beside the target (O_EXCL: a planted symlink is never
    // followed), renamed over it only once the file arrived intact.
    char *dir = strdup(local), *slash = strrchr(dir, '/');
    const char *base = slash != NULL ? slash + 1 : local;
    if (slash != NULL) {
        slash[1] = '\0';
    }
    int fd = -1;
    if (asprintf(&k->tmp, "%s.%.64s.XXXXXX.mqb-part", slash != NULL ? dir : "", base) >= 0) {
        fd = mkostemps(k->tmp, 9, O_CLOEXEC);
    }
    free(dir);
    if (fd < 0 || (k->f = fdopen(fd, "wb")) == NULL) {
        tool_error(t, "cannot write '%s': %s", local, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(k->tmp);
        }
        return EXIT_LOCAL;
    }
    fchmod(fd, 0644 & ~current_umask());
    return EXIT_OK;
}

static int sink_write(struct tool *t, struct sink *k, const uint8_t *data, size_t len) {
    EVP_DigestUpdate(k->md, data, len);
    if (len > 0 && fwrite(data, 1, len, k->f) != len) {
        tool_error(t, "write error: %s", strerror(errno));
        return EXIT_LOCAL;
    }
    return EXIT_OK;
}

static void sink_hash(struct sink *k, char out[SHA256_HEX + 1]) {
    uint8_t md[32];
    EVP_DigestFinal_ex(k->md, md, NULL);
    hex(md, sizeof(md), out);
}

// Finishes the sink: on success the file replaces the target; otherwise it is removed.
static int sink_close(struct tool *t, struct sink *k, int code) {
    EVP_MD_CTX_free(k->md);
    if (k->target == NULL || k->f == NULL) {
        fflush(k->f);
        free(k->tmp);
        return code;
    }
    if (fclose(k->f) != 0 && code == EXIT_OK) {
        tool_error(t, "write error on '%s': %s", k->tmp, strerror(errno));
        code = EXIT_LOCAL;
    }
    if (code == EXIT_OK && rename(k->tmp, k->target) != 0) {
        tool_error(t, "cannot write '%s': %s", k->target, strerror(errno));
        code = EXIT_LOCAL;
    }
    if (code != EXIT_OK) {
        unlink(k->tmp);
    }
    free(k->tmp);
    return code;
}

// Receives a get (or xget) stream into the sink, acknowledging as the board's window needs.
static int stream_down(struct tool *t, struct sink *k, bool ext, unsigned window,
                       const char *label) {
    struct session *s = &t->session;
    struct mqb_seq seq;
    mqb_seq_init(&seq);
    uint32_t received = 0;
    uint64_t bytes = 0;
    struct progress pg;
    progress_begin(t, &pg, label, 0);
    for (;;) {
        struct reply r;
        int code = session_recv(s, -1, &r);
        code = code == RECV_INTERRUPT ? EXIT_INTERRUPTED : code;
        if (code == EXIT_OK && r.is_err && memmem(r.data, r.len, "is a directory", 14) != NULL) {
            char *what = tool_escape(label);
            tool_error(t, "%s is a directory on the board (get -r copies a tree)", what);
            free(what);
            code = EXIT_BOARD;
        } else if (code == EXIT_OK && r.is_err) {
            code = report_board_error(t, &r);
        }
        enum mqb_err err = code == EXIT_OK ? mqb_seq_check(&seq, &r.hdr) : MQB_OK;
        if (err == MQB_ERR_DUP) {
            continue;
        }
        if (err != MQB_OK) {
            tool_error(t, "a message of the file was lost; nothing written");
            code = EXIT_BOARD;
        }
        if (code != EXIT_OK) {
            progress_end(&pg);
            return code;
        }
        received++;
        if (r.hdr.last) {
            progress_end(&pg);
            if (!ext) {
                return sink_write(t, k, r.data, r.len);
            }
            char got[SHA256_HEX + 1];
            sink_hash(k, got);
            if (r.len != SHA256_HEX || memcmp(r.data, got, SHA256_HEX) != 0) {
                tool_error(t, "hash mismatch: the file arrived damaged; nothing written");
                return EXIT_BOARD;
            }
            return EXIT_OK;
        }
        if (ext && received == 1) {
            pg.total = strtoull((const char *)r.data, NULL, 10); // the size, not data
        } else if ((code = sink_write(t, k, r.data, r.len)) != EXIT_OK) {
            return code;
        }
        bytes += received == 1 && ext ? 0 : r.len;
        progress_update(&pg, bytes);
        if (ext && received % (window / 2) == 0) {
            char ack[24];
            int n = snprintf(ack, sizeof(ack), "%u", received);
            session_send_cmd(s, "ack", NULL, (const uint8_t *)ack, (size_t)n);
        }
    }
}

int get_file(struct tool *t, const char *remote, const char *local) {
    struct session *s = &t->session;
    struct board_caps caps;
    struct sink k;
    int code = session_connect(t);
    if (code == EXIT_OK) {
        code = session_caps(s, &caps);
    }
    if (code != EXIT_OK) {
        return code;
    }
    bool ext = caps.proto >= 2;
    code = sink_open(t, &k, local);
    if (code == EXIT_OK) {
        code = session_begin(s, ext ? "xget" : "get");
    }
    if (code == EXIT_OK) {
        char opts[48];
        int n = ext ? snprintf(opts, sizeof(opts), "%zu %u", caps.chunk, caps.window) : 0;
        code = session_send(s, remote, 0, true, (const uint8_t *)opts, (size_t)n);
    }
    if (code == EXIT_OK) {
        code = stream_down(t, &k, ext, caps.window, remote);
    }
    session_end(s);
    // An original board sends no hash: ask for one and compare.
    if (code == EXIT_OK && !ext) {
        char want[SHA256_HEX + 1], got[SHA256_HEX + 1];
        sink_hash(&k, got);
        code = remote_sha(t, remote, want);
        if (code == EXIT_OK && strcmp(want, got) != 0) {
            tool_error(t, "%s: hash mismatch: the file arrived damaged; nothing written", remote);
            code = EXIT_BOARD;
        }
    }
    return sink_close(t, &k, code);
}

// mkdir -p of the local target the user named.
static int mkdir_p(struct tool *t, const char *path) {
    char *p = strdup(path);
    int code = EXIT_OK;
    for (char *c = p + 1; code == EXIT_OK; c++) {
        if (*c != '/' && *c != '\0') {
            continue;
        }
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            tool_error(t, "cannot create directory '%s': %s", p, strerror(errno));
            code = EXIT_LOCAL;
        }
        *c = saved;
        if (saved == '\0') {
            break;
        }
    }
    free(p);
    return code;
}

// Makes the directories of sub beneath local (which exists), never through a symlink: every
// level that exists must be a real directory. last_too: sub itself is a directory.
static int local_dirs(struct tool *t, const char *local, const char *sub, bool last_too) {
    char *path = join(local, sub);
    size_t start = strlen(path) - strlen(sub);
    int code = EXIT_OK;
    for (size_t i = start; code == EXIT_OK && path[i - 1] != '\0'; i++) {
        bool end = path[i] == '\0';
        if (path[i] != '/' && !(end && last_too)) {
            continue;
        }
        char saved = path[i];
        path[i] = '\0';
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                tool_error(t, "'%s' exists and is not a directory (or is a symlink)", path);
                code = EXIT_LOCAL;
            }
        } else if (mkdir(path, 0755) != 0) {
            tool_error(t, "cannot create '%s': %s", path, strerror(errno));
            code = EXIT_LOCAL;
        }
        path[i] = saved;
        if (end) {
            break;
        }
    }
    free(path);
    return code;
}

static int get_tree(struct tool *t, const char *remote, const char *local) {
    struct rlist l;
    int code = remote_list(t, remote, true, false, &l);
    struct stat st;
    if (code == EXIT_OK && mkdir(local, 0755) != 0 &&
        (errno != EEXIST || lstat(local, &st) != 0 || !S_ISDIR(st.st_mode))) {
        tool_error(t, "cannot create directory '%s'", local);
        code = EXIT_LOCAL;
    }
    int partial = EXIT_OK;
    for (size_t i = 0; code == EXIT_OK && i < l.n; i++) {
        const char *sub = remote_sub(l.v[i].path, remote);
        char *shown = tool_escape(l.v[i].path);
        if (sub == NULL) {
            tool_error(t, "%s: not a name under %s (the board's listing is wrong): skipped", shown,
                       remote);
            partial = EXIT_BOARD;
        } else if (!topic_safe(l.v[i].path)) {
            tool_error(t,
                       "%s: a name with '+', '#' or control characters cannot be fetched "
                       "(MQTT topics carry it): skipped",
                       shown);
            partial = EXIT_BOARD;
        } else if ((code = local_dirs(t, local, sub, l.v[i].dir)) == EXIT_OK && !l.v[i].dir) {
            char *dst = join(local, sub);
            code = get_file(t, l.v[i].path, dst);
            free(dst);
        }
        free(shown);
    }
    rlist_free(&l);
    return code != EXIT_OK ? code : partial;
}

int cmd_get(struct tool *t, int argc, char **argv) {
    bool recursive = argc > 1 && strcmp(argv[1], "-r") == 0;
    argc -= recursive;
    argv += recursive;
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: mqboard get [-r] REMOTE [LOCAL|-]\n");
        return EXIT_USAGE;
    }
    const char *remote = argv[1];
    const char *local = argc == 3 && strcmp(argv[2], "-") != 0 ? argv[2] : NULL;
    if (recursive) {
        // rsync's rule: "DIR/" copies the contents of DIR into LOCAL, "DIR" copies DIR itself
        // (LOCAL/DIR); LOCAL defaults to ".".
        size_t n = strlen(remote);
        char *b = base_of(remote);
        bool contents = n > 1 && remote[n - 1] == '/';
        char *dst = contents              ? strdup(local != NULL ? local : ".")
                    : strcmp(b, "/") == 0 ? strdup(local != NULL ? local : ".")
                                          : join(local != NULL ? local : ".", b);
        char *rdir = strdup(remote); // listed without its trailing slashes
        for (size_t k = strlen(rdir); k > 1 && rdir[k - 1] == '/'; k--) {
            rdir[k - 1] = '\0';
        }
        int code = local != NULL ? mkdir_p(t, local) : EXIT_OK;
        code = code == EXIT_OK ? get_tree(t, rdir, dst) : code;
        free(rdir);
        free(b);
        free(dst);
        return code;
    }
    char *b = base_of(remote);
    char *dst = local != NULL && is_dir(local) ? join(local, b) : NULL;
    int code = get_file(t, remote, dst != NULL ? dst : local);
    free(dst);
    free(b);
    return code;
}

int cmd_cat(struct tool *t, int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mqboard cat REMOTE...\n");
        return EXIT_USAGE;
    }
    int code = EXIT_OK;
    for (int i = 1; code == EXIT_OK && i < argc; i++) {
        code = get_file(t, argv[i], NULL);
    }
    return code;
}

// A copy on the board itself (cp :a :b), by a program that streams it in blocks.
static int board_copy(struct tool *t, const char *src, const char *dst) {
    char *s = py_str(src), *d = py_str(dst);
    char *prog = NULL;
    int code = EXIT_LOCAL;
    if (asprintf(&prog,
                 "_s=%s\n_d=%s\n"
                 "try:\n"
                 " try:\n"
                 "  if uos.stat(_d)[0]&0x4000:_d=_d.rstrip('/')+'/'+_s.rstrip('/').split('/')[-1]\n"
                 " except OSError:pass\n"
                 " with open(_s,'rb') as _i:\n"
                 "  with open(_d,'wb') as _o:\n"
                 "   while 1:\n"
                 "    _b=_i.read(4096)\n"
                 "    if not _b:break\n"
                 "    _o.write(_b)\n"
                 "except OSError as e:_err(e,_s)\n"
                 "del _s,_d\n",
                 s, d) >= 0) {
        code = remote_run(t, "cp", prog, NULL, NULL);
    }
    free(prog);
    free(s);
    free(d);
    return code;
}

// cp with mpremote's ':' marking board paths: cp main.py :, cp -r lib :, cp :a.py :b.py,
// cp :log.txt . Copies to the board are verified puts, from it verified gets.
int cmd_cp(struct tool *t, int argc, char **argv) {
    // -r: trees; -f (mpremote's "copy even if unchanged"): every copy is made anyway.
    bool recursive = false;
    while (argc > 1 && argv[1][0] == '-' && argv[1][1] != '\0' &&
           strspn(argv[1] + 1, "rf") == strlen(argv[1] + 1)) {
        recursive |= strchr(argv[1], 'r') != NULL;
        argc--;
        argv++;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: mqboard cp [-rf] SRC... DST   (':' marks a board path: "
                        "cp main.py :, cp :log.txt .)\n");
        return EXIT_USAGE;
    }
    const char *dst = argv[argc - 1];
    bool to_board = dst[0] == ':';
    for (int i = 1; i < argc - 1; i++) {
        if ((argv[i][0] == ':') == to_board && !to_board) {
            tool_error(t,
                       "cp: neither '%s' nor '%s' is on the board (mark board paths "
                       "with ':')",
                       argv[i], dst);
            return EXIT_USAGE;
        }
    }
    const char *rdst = to_board ? (dst[1] != '\0' ? dst + 1 : "/") : dst;
    int code = EXIT_OK;
    for (int i = 1; code == EXIT_OK && i < argc - 1; i++) {
        const char *src = argv[i];
        bool from_board = src[0] == ':';
        const char *rsrc = from_board ? (src[1] != '\0' ? src + 1 : "/") : src;
        if (from_board && to_board) {
            code = board_copy(t, rsrc, rdst);
        } else if (to_board && is_dir(src)) {
            code = recursive ? put_dir(t, src, rdst) : EXIT_USAGE;
            if (!recursive) {
                tool_error(t, "'%s' is a directory (use cp -r)", src);
            }
        } else if (to_board) {
            char *b = base_of(src);
            size_t n = strlen(rdst);
            char *target = rdst[n - 1] == '/' ? join(rdst, b) : strdup(rdst);
            code = put_one(t, src, target, true);
            free(b);
            free(target);
        } else {
            char *rargs[] = {"get", "-r", (char *)rsrc, (char *)rdst, NULL};
            char *fargs[] = {"get", (char *)rsrc, (char *)rdst, NULL};
            code = recursive ? cmd_get(t, 4, rargs) : cmd_get(t, 3, fargs);
        }
    }
    return code;
}

// edit :FILE: the board's file in $VISUAL or $EDITOR (vi), put back (verified) if it changed.
// A file that does not exist yet starts empty.
// Runs $VISUAL or $EDITOR (vi) on path, through the shell so that an editor with arguments
// works, the file name passed as "$1" (never parsed by the shell). EXIT_OK when it succeeded.
static int run_editor(struct tool *t, const char *path) {
    const char *editor = getenv("VISUAL") ? getenv("VISUAL") : getenv("EDITOR");
    char *script = NULL;
    if (asprintf(&script, "%s \"$1\"", editor != NULL && editor[0] ? editor : "vi") < 0) {
        return EXIT_LOCAL;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", script, "sh", path, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    free(script);
    if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return EXIT_OK;
    }
    if (pid > 0 && WIFEXITED(status)) {
        tool_error(t, "the editor exited with status %d: the board's file is unchanged",
                   WEXITSTATUS(status));
    } else {
        tool_error(t, "the editor %s: the board's file is unchanged",
                   pid < 0 ? "could not be started" : "was killed by a signal");
    }
    return EXIT_LOCAL;
}

int cmd_edit(struct tool *t, int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mqboard edit :FILE\n");
        return EXIT_USAGE;
    }
    const char *remote = argv[1][0] == ':' ? argv[1] + 1 : argv[1];
    char *b = base_of(remote), *tmp = NULL;
    int fd = -1;
    if (asprintf(&tmp, "/tmp/mqboard-edit-XXXXXX-%s", b) >= 0) {
        fd = mkstemps(tmp, (int)strlen(b) + 1);
    }
    free(b);
    if (fd < 0) {
        tool_error(t, "cannot make a temporary file: %s", strerror(errno));
        free(tmp);
        return EXIT_LOCAL;
    }
    close(fd);
    FILE *err = t->err;
    t->err = fopen("/dev/null", "w"); // a missing file is a new one, not an error
    int code = get_file(t, remote, tmp);
    fclose(t->err);
    t->err = err;
    if (code == EXIT_BOARD) {
        code = EXIT_OK; // start empty (a real board error shows again at the put)
        if (!t->opts.quiet) {
            fprintf(t->err, "mqboard: %s: a new file\n", remote);
        }
    }
    char before[SHA256_HEX + 1] = "", after[SHA256_HEX + 1] = "";
    FILE *f = code == EXIT_OK ? fopen(tmp, "rb") : NULL;
    if (f != NULL) {
        file_sha256(f, before);
        fclose(f);
    }
    code = code == EXIT_OK ? run_editor(t, tmp) : code;
    f = code == EXIT_OK ? fopen(tmp, "rb") : NULL;
    if (f != NULL) {
        file_sha256(f, after);
        fclose(f);
    }
    if (code == EXIT_OK && strcmp(before, after) != 0) {
        code = put_file(t, tmp, remote);
    } else if (code == EXIT_OK && !t->opts.quiet) {
        fprintf(t->err, "mqboard: %s unchanged\n", remote);
    }
    unlink(tmp);
    free(tmp);
    return code;
}
