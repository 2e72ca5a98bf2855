// mqboard's answers to the board's questions (reply/ask/<id>, docs/protocol.md): keyboard
// input for the program that runs (sys.stdin, input()) and the files of the directory that
// `mount` serves as the board's /remote. Every question is untrusted: its JSON is checked
// field by field, paths stay beneath the mounted directory (no "..", no symlink out of it),
// nothing is written unless the mount is writable, and every answer is bounded.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "tool.h"

// Data bytes per answer at most (the board asks for at most this much; a listing that does
// not fit is refused).
#define ANSWER_MAX 32768

static void answer(struct session *s, const char *to, unsigned long n, char status,
                   const void *data, size_t len) {
    char topic[MQB_TOPIC_MAX], tail[24];
    snprintf(tail, sizeof(tail), "%lu", n);
    if (mqb_topic_cmd(topic, sizeof(topic), s->o->prefix, "ans", to, tail) != MQB_OK) {
        return;
    }
    uint8_t *p = malloc(MQB_HDR_LEN + 1 + len);
    mqb_hdr_encode(p, MQB_SEQ_MASK, true);
    p[MQB_HDR_LEN] = (uint8_t)status;
    if (len > 0) {
        memcpy(p + MQB_HDR_LEN + 1, data, len);
    }
    session_publish(s, topic, p, MQB_HDR_LEN + 1 + len);
    free(p);
}

static void answer_errno(struct session *s, const char *to, unsigned long n, int err,
                         const char *why) {
    char text[256];
    const char *name = strerrorname_np(err);
    int len = snprintf(text, sizeof(text), "%s %s", name != NULL ? name : "EIO",
                       why != NULL ? why : strerror(err));
    answer(s, to, n, '-', text, (size_t)len);
}

// ---- keyboard input ----

void ask_stdin_ready(struct session *s) {
    char buf[4096];
    size_t want = s->stdin_len < sizeof(buf) ? s->stdin_len : sizeof(buf);
    ssize_t got = read(STDIN_FILENO, buf, want);
    if (got < 0 && errno == EINTR) {
        return; // Ctrl-C: the wait sees it
    }
    s->stdin_eof = got <= 0;
    s->stdin_want = false;
    answer(s, s->stdin_to, s->stdin_n, '+', buf, got > 0 ? (size_t)got : 0);
}

// ---- the mounted directory ----
//
// Every path is opened relative to a descriptor of the mounted directory, never resolved and
// then reopened by name: a local process that swaps a directory for a symlink between a
// check and an open gains nothing. openat2(RESOLVE_BENEATH) follows symlinks only while they
// stay beneath the directory; where the kernel lacks it, each component is opened with
// O_NOFOLLOW (no symlink is followed at all). Writes open the last name with O_NOFOLLOW and
// O_NONBLOCK and accept only regular files (a FIFO never blocks mqboard).

// Opens rel (relative, no "..": checked by the caller) beneath dirfd. unsafe (mount -l, as
// mpremote's --unsafe-links): symlinks may lead out of the directory.
static int open_beneath(int dirfd, const char *rel, int flags, mode_t mode, bool unsafe) {
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .mode = (flags & O_CREAT) ? mode : 0,
                           .resolve = RESOLVE_NO_MAGICLINKS | (unsafe ? 0 : RESOLVE_BENEATH)};
    if (rel[0] == '\0') {
        rel = ".";
    }
    if (unsafe) {
        return openat(dirfd, rel, flags | O_CLOEXEC, mode);
    }
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS) {
        return (int)fd;
    }
    // Without openat2: component by component, never following a symlink.
    char *copy = strdup(rel), *save = NULL;
    int cur = dup(dirfd);
    char *name = strtok_r(copy, "/", &save);
    while (cur >= 0 && name != NULL) {
        char *next = strtok_r(NULL, "/", &save);
        int f = next != NULL ? O_PATH | O_DIRECTORY | O_NOFOLLOW : flags | O_NOFOLLOW;
        int fd2 = openat(cur, name, f | O_CLOEXEC, mode);
        int saved = errno;
        close(cur);
        errno = saved;
        cur = fd2;
        name = next;
    }
    free(copy);
    return cur;
}

// A question's path: "/" is the mounted directory, "/a/b" its a/b. No ".." component (a
// board's "/remote/../x" never reaches the host's x). Returns 0 with rel pointing into path
// (leading slashes skipped, trailing ones removed in buf), or an errno.
static int relative(const char *path, char *buf, size_t cap, const char **rel) {
    if (path[0] != '/' || strlen(path) >= cap) {
        return EINVAL;
    }
    for (const char *p = path; *p != '\0';) {
        p += strspn(p, "/");
        size_t n = strcspn(p, "/");
        if (n == 2 && strncmp(p, "..", 2) == 0) {
            return EACCES;
        }
        p += n;
    }
    snprintf(buf, cap, "%s", path + strspn(path, "/"));
    for (size_t len = strlen(buf); len > 0 && buf[len - 1] == '/'; len--) {
        buf[len - 1] = '\0';
    }
    *rel = buf;
    return 0;
}

// The parent directory of rel (opened beneath the mount) and rel's last name; an errno.
static int open_parent(int root, char *rel, int *dirfd, const char **name, bool unsafe) {
    if (rel[0] == '\0') {
        return EPERM; // the mounted directory itself is never removed or replaced
    }
    char *slash = strrchr(rel, '/');
    if (slash != NULL) {
        *slash = '\0';
        *dirfd = open_beneath(root, rel, O_PATH | O_DIRECTORY, 0, unsafe);
        *slash = '/';
        *name = slash + 1;
    } else {
        *dirfd = dup(root);
        *name = rel;
    }
    if (strcmp(*name, ".") == 0 || (*name)[0] == '\0') {
        if (*dirfd >= 0) {
            close(*dirfd);
        }
        return EINVAL;
    }
    return *dirfd < 0 ? errno : 0;
}

static void answer_stat(struct session *s, const char *to, unsigned long n, int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        answer_errno(s, to, n, errno, NULL);
        return;
    }
    char text[128];
    int len = snprintf(text, sizeof(text), "{\"dir\":%s,\"size\":%lld,\"mtime\":%lld}",
                       S_ISDIR(st.st_mode) ? "true" : "false", (long long)st.st_size,
                       (long long)st.st_mtime);
    answer(s, to, n, '+', text, (size_t)len);
}

// [[name, is_dir, size], ...]; a symlink that leads out of the directory is not shown.
static void serve_list(struct session *s, const char *to, unsigned long n, int fd) {
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        answer_errno(s, to, n, errno, NULL);
        close(fd);
        return;
    }
    cJSON *list = cJSON_CreateArray();
    struct dirent *e;
    struct stat st;
    while ((e = readdir(d)) != NULL) {
        int f = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0
                    ? -1
                    : open_beneath(dirfd(d), e->d_name, O_PATH, 0, s->mount_unsafe);
        bool ok = f >= 0 && fstat(f, &st) == 0;
        if (f >= 0) {
            close(f);
        }
        if (!ok) {
            continue;
        }
        cJSON *it = cJSON_CreateArray();
        cJSON_AddItemToArray(it, cJSON_CreateString(e->d_name));
        cJSON_AddItemToArray(it, cJSON_CreateBool(S_ISDIR(st.st_mode)));
        cJSON_AddItemToArray(it, cJSON_CreateNumber(S_ISDIR(st.st_mode) ? 0 : (double)st.st_size));
        cJSON_AddItemToArray(list, it);
    }
    closedir(d);
    char *text = cJSON_PrintUnformatted(list);
    if (strlen(text) > ANSWER_MAX) {
        answer_errno(s, to, n, E2BIG, "directory too large to list over MQTT");
    } else {
        answer(s, to, n, '+', text, strlen(text));
    }
    free(text);
    cJSON_Delete(list);
}

// import: "pkg" for PATH/__init__.py, "mod" for PATH.py, else ENOENT.
static void serve_find(struct session *s, const char *to, unsigned long n, int root,
                       const char *rel) {
    static const char *const kinds[][2] = {{"/__init__.py", "pkg"}, {".py", "mod"}};
    char cand[PATH_MAX];
    struct stat st;
    for (size_t i = 0; i < 2; i++) {
        snprintf(cand, sizeof(cand), "%s%s", rel, kinds[i][0]);
        int fd = open_beneath(root, cand + strspn(cand, "/"), O_PATH, 0, s->mount_unsafe);
        bool found = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        if (fd >= 0) {
            close(fd);
        }
        if (found) {
            answer(s, to, n, '+', kinds[i][1], 3);
            return;
        }
    }
    answer_errno(s, to, n, ENOENT, NULL);
}

static void serve_read(struct session *s, const char *to, unsigned long n, int fd, double off,
                       double want) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        answer_errno(s, to, n, EISDIR, NULL);
        return;
    }
    size_t len = want > 0 && want < ANSWER_MAX ? (size_t)want : ANSWER_MAX;
    char *buf = malloc(len);
    ssize_t got = off >= 0 && off < 1e15 ? pread(fd, buf, len, (off_t)off) : -1;
    if (got < 0) {
        answer_errno(s, to, n, off >= 0 ? errno : EINVAL, NULL);
    } else {
        answer(s, to, n, '+', buf, (size_t)got);
    }
    free(buf);
}

// create/write: a regular file only (O_NONBLOCK: a FIFO's open does not wait for a reader).
static int do_write(int dirfd, const char *name, double off, const uint8_t *data, size_t len,
                    bool create, bool excl) {
    int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | (create ? O_CREAT : 0) |
                (excl ? O_EXCL : 0);
    int fd = openat(dirfd, name, flags, 0644);
    if (fd < 0) {
        return errno == ENXIO ? EINVAL : errno; // ENXIO: a FIFO without a reader
    }
    struct stat st;
    int err = fstat(fd, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? EINVAL : 0;
    if (err == 0 && create && ftruncate(fd, 0) != 0) {
        err = errno;
    }
    if (err == 0 && len > 0 &&
        (!(off >= 0 && off < 1e15) || pwrite(fd, data, len, (off_t)off) != (ssize_t)len)) {
        err = off >= 0 ? errno : EINVAL;
    }
    close(fd);
    return err;
}

// The write questions: create, write, mkdir, remove, rmdir, rename. 0 or an errno.
static int serve_change(struct session *s, int root, const char *op, char *rel, const cJSON *q,
                        const uint8_t *data, size_t len) {
    int dirfd;
    const char *name;
    int err = open_parent(root, rel, &dirfd, &name, s->mount_unsafe);
    if (err != 0) {
        return err;
    }
    double off = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "off"));
    if (strcmp(op, "create") == 0 || strcmp(op, "write") == 0) {
        bool create = op[0] == 'c';
        err = do_write(dirfd, name, create ? 0 : off, data, create ? 0 : len, create,
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "excl")));
    } else if (strcmp(op, "mkdir") == 0) {
        err = mkdirat(dirfd, name, 0755) == 0 ? 0 : errno;
    } else if (strcmp(op, "remove") == 0 || strcmp(op, "rmdir") == 0) {
        err = unlinkat(dirfd, name, op[1] == 'm' ? AT_REMOVEDIR : 0) == 0 ? 0 : errno;
    } else {
        const char *to_path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "to"));
        char buf[PATH_MAX];
        char *to_rel = NULL;
        int dst_dir = -1;
        const char *dst_name = NULL;
        err =
            to_path == NULL ? EINVAL : relative(to_path, buf, sizeof(buf), (const char **)&to_rel);
        err = err != 0 ? err : open_parent(root, to_rel, &dst_dir, &dst_name, s->mount_unsafe);
        err = err != 0 ? err : renameat(dirfd, name, dst_dir, dst_name) == 0 ? 0 : errno;
        if (dst_dir >= 0) {
            close(dst_dir);
        }
    }
    close(dirfd);
    return err;
}

// One file question (the mount's): op and path from its JSON; data after the JSON line.
static void serve_file(struct session *s, const char *to, unsigned long n, const cJSON *q,
                       const uint8_t *data, size_t len) {
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "op"));
    // A path with an escaped NUL is cut there by cJSON: still a path beneath the directory.
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "path"));
    static const char *const writes[] = {"create", "write", "mkdir", "remove", "rmdir", "rename"};
    bool is_write = false;
    for (size_t i = 0; op != NULL && i < sizeof(writes) / sizeof(writes[0]); i++) {
        is_write |= strcmp(op, writes[i]) == 0;
    }
    char buf[PATH_MAX];
    const char *rel = NULL;
    int err = op == NULL || path == NULL ? EINVAL : relative(path, buf, sizeof(buf), &rel);
    if (err == 0 && is_write && !s->mount_rw) {
        answer_errno(s, to, n, EROFS, "mounted read-only (mqboard mount --rw)");
        return;
    }
    int root = err == 0 ? open(s->mount_root, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
    err = err != 0 ? err : root < 0 ? errno : 0;
    if (err == 0 && strcmp(op, "find") == 0) {
        serve_find(s, to, n, root, rel);
    } else if (err == 0 && is_write) {
        err = serve_change(s, root, op, buf, q, data, len);
        if (err == 0) {
            answer(s, to, n, '+', NULL, 0);
        }
    } else if (err == 0 &&
               (strcmp(op, "stat") == 0 || strcmp(op, "list") == 0 || strcmp(op, "read") == 0)) {
        int fd = open_beneath(root, rel,
                              op[0] == 's'   ? O_PATH
                              : op[0] == 'l' ? O_RDONLY | O_DIRECTORY
                                             : O_RDONLY | O_NONBLOCK,
                              0, s->mount_unsafe);
        err = fd < 0 ? (errno == EXDEV || errno == ELOOP ? EACCES : errno) : 0;
        if (fd >= 0 && op[0] == 's') {
            answer_stat(s, to, n, fd);
            close(fd);
        } else if (fd >= 0 && op[0] == 'l') {
            serve_list(s, to, n, fd); // closes fd
        } else if (fd >= 0) {
            serve_read(s, to, n, fd,
                       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "off")),
                       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "len")));
            close(fd);
        }
    } else if (err == 0) {
        err = ENOSYS;
    }
    if (root >= 0) {
        close(root);
    }
    if (err != 0) {
        answer_errno(s, to, n, err == EXDEV ? EACCES : err,
                     err == EACCES || err == EXDEV ? "outside the mounted directory" : NULL);
    }
}

void ask_serve(struct session *s, const char *to, const uint8_t *payload, size_t len) {
    if (len < MQB_HDR_LEN) {
        return;
    }
    const uint8_t *body = payload + MQB_HDR_LEN, *end = payload + len;
    const uint8_t *nl = memchr(body, '\n', (size_t)(end - body));
    const uint8_t *data = nl != NULL ? nl + 1 : end;
    cJSON *q = cJSON_ParseWithLength((const char *)body, (size_t)((nl != NULL ? nl : end) - body));
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(q, "n");
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "op"));
    if (!cJSON_IsNumber(jn) || jn->valuedouble < 0 || jn->valuedouble > 4294967295.0 ||
        op == NULL) {
        cJSON_Delete(q); // not a question we can even answer
        return;
    }
    unsigned long n = (unsigned long)jn->valuedouble;
    if (strcmp(op, "stdin") == 0 && strcmp(to, s->id) == 0 && (!s->user_code || s->o->no_stdin)) {
        // Our stdin is only for the user's own code (eval/exec/run/repl), not for a put, a
        // listing program or a board that asks unbidden (issue 21), nor with -n.
        answer(s, to, n, '+', NULL, 0); // end of file
    } else if (strcmp(op, "stdin") == 0 && strcmp(to, s->id) == 0) {
        double want = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "len"));
        s->stdin_n = n;
        s->stdin_len = want >= 1 && want < 4096 ? (size_t)want : 4096;
        snprintf(s->stdin_to, sizeof(s->stdin_to), "%s", to);
        s->stdin_want = true;
        if (s->stdin_eof) { // the end of input stays the end
            s->stdin_want = false;
            answer(s, to, n, '+', NULL, 0);
        }
    } else if (s->mount_root != NULL && strcmp(to, s->mount_id) == 0) {
        serve_file(s, to, n, q, data, (size_t)(end - data));
    } else {
        answer_errno(s, to, n, ENODEV, "mqboard serves no such thing here");
    }
    cJSON_Delete(q);
}
