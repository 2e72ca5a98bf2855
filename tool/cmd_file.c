// mqboard's file transfers up: put (-r for trees), cp and edit, flow-controlled and
// hash-verified against our agent (xput), and put plus a hash check by eval against a board
// running the original code; what get (cmd_get.c) and ota (cmd_ota.c) share with them.
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
#include "transfer.h"

mode_t current_umask(void) {
    mode_t m = umask(0);
    umask(m);
    return m;
}

void hex_encode(const uint8_t *b, size_t n, char *out) {
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
    hex_encode(md, sizeof(md), out);
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
int remote_sha(struct tool *t, const char *path, char out[SHA256_HEX + 1]) {
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
    uint64_t n;
    if (parse_number(r->data, r->len, "SEQ ", &n)) { // exactly: never the bytes past the reply
        if (n < UINT32_MAX && n + 1 > *acked) {
            *acked = (uint32_t)(n + 1);
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
int stream_up(struct tool *t, FILE *f, uint64_t size, const char *cmd, const char *tail,
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
                hex_encode(digest, sizeof(digest), (char *)buf);
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

int open_local(struct tool *t, const char *local, FILE **f, uint64_t *size) {
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
        char *b = path_base(local), *into = path_join(remote, b);
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

bool path_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *path_join(const char *a, const char *b) {
    char *r;
    size_t n = strlen(a);
    return asprintf(&r, "%s%s%s", a, n > 0 && a[n - 1] == '/' ? "" : "/", b) < 0 ? NULL : r;
}

char *path_base(const char *path) {
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
        char *l = path_join(local, e->d_name), *r = path_join(remote, e->d_name);
        if (!local_inside(tc, l)) {
            tool_error(t, "%s: a symlink out of the tree: skipped", l);
            tree_note(tc, EXIT_LOCAL);
        } else if (!topic_safe(r)) { // named, skipped, and the copy fails at the end
            tool_error(t,
                       "%s: a board path cannot contain '+', '#' or control characters "
                       "(MQTT topics carry it): skipped",
                       r);
            tree_note(tc, EXIT_BOARD);
        } else if (path_is_dir(l)) {
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
    char *b = path_base(local);
    char *target = n > 0 && local[n - 1] == '/' ? strdup(remote) : path_join(remote, b);
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
        if (path_is_dir(argv[i]) && !recursive) {
            tool_error(t, "'%s' is a directory (use put -r)", argv[i]);
            code = EXIT_USAGE;
        } else if (path_is_dir(argv[i])) {
            code = put_dir(t, argv[i], remote);
        } else {
            char *b = path_base(argv[i]);
            char *target = into_dir ? path_join(remote, b) : strdup(remote);
            code = put_one(t, argv[i], target, !into_dir);
            free(b);
            free(target);
        }
    }
    return code;
}

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
        } else if (to_board && path_is_dir(src)) {
            code = recursive ? put_dir(t, src, rdst) : EXIT_USAGE;
            if (!recursive) {
                tool_error(t, "'%s' is a directory (use cp -r)", src);
            }
        } else if (to_board) {
            char *b = path_base(src);
            size_t n = strlen(rdst);
            char *target = rdst[n - 1] == '/' ? path_join(rdst, b) : strdup(rdst);
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
    char *b = path_base(remote), *tmp = NULL;
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
