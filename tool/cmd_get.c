// mqboard get and cat: files (trees with -r) from the board, flow-controlled and hash-verified
// against our agent (xget), or read by eval plus a hash check on a board running the original
// code; written to a temporary file renamed over the target only once verified.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remote.h"
#include "tool.h"
#include "transfer.h"

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
    hex_encode(md, sizeof(md), out);
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
            uint64_t size = 0; // the size, not data (for the progress bar only)
            pg.total = parse_number(r.data, r.len, "", &size) ? size : 0;
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
    char *path = path_join(local, sub);
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
            char *dst = path_join(local, sub);
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
        char *b = path_base(remote);
        bool contents = n > 1 && remote[n - 1] == '/';
        char *dst = contents              ? strdup(local != NULL ? local : ".")
                    : strcmp(b, "/") == 0 ? strdup(local != NULL ? local : ".")
                                          : path_join(local != NULL ? local : ".", b);
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
    char *b = path_base(remote);
    char *dst = local != NULL && path_is_dir(local) ? path_join(local, b) : NULL;
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
