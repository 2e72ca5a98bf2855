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
#include <unistd.h>

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

static bool beneath(const char *root, const char *real) {
    size_t n = strlen(root);
    return strncmp(real, root, n) == 0 && (real[n] == '\0' || real[n] == '/');
}

// The host path of a board path beneath /remote ("/" is the mounted directory itself).
// must_exist: the path itself must resolve beneath the directory (a symlink in it is followed
// only when its target stays inside); else its parent must, and the last name is not
// followed. Returns 0, or an errno.
static int host_path(const struct session *s, const char *rel, bool must_exist, char *out,
                     size_t cap) {
    if (rel[0] != '/' || strlen(rel) > PATH_MAX / 2) {
        return EINVAL;
    }
    for (const char *p = rel; *p != '\0';) {
        p += strspn(p, "/");
        size_t n = strcspn(p, "/");
        if ((n == 2 && strncmp(p, "..", 2) == 0)) {
            return EACCES;
        }
        p += n;
    }
    if (snprintf(out, cap, "%s%s", s->mount_root, rel) >= (int)cap) {
        return ENAMETOOLONG;
    }
    size_t len = strlen(out);
    while (len > strlen(s->mount_root) && out[len - 1] == '/') {
        out[--len] = '\0';
    }
    char real[PATH_MAX];
    if (must_exist) {
        if (realpath(out, real) == NULL) {
            return errno;
        }
        return beneath(s->mount_root, real) ? 0 : EACCES;
    }
    char *slash = strrchr(out, '/');
    *slash = '\0';
    int err = realpath(out[0] != '\0' ? out : "/", real) == NULL ? errno
              : beneath(s->mount_root, real) ? 0
                                             : EACCES;
    *slash = '/';
    return err;
}

static void serve_stat(struct session *s, const char *to, unsigned long n, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
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
static void serve_list(struct session *s, const char *to, unsigned long n, const char *path) {
    DIR *d = opendir(path);
    if (d == NULL) {
        answer_errno(s, to, n, errno, NULL);
        return;
    }
    cJSON *list = cJSON_CreateArray();
    struct dirent *e;
    char full[PATH_MAX], real[PATH_MAX];
    struct stat st;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            snprintf(full, sizeof(full), "%s/%s", path, e->d_name) >= (int)sizeof(full) ||
            realpath(full, real) == NULL || !beneath(s->mount_root, real) || stat(real, &st) != 0) {
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
static void serve_find(struct session *s, const char *to, unsigned long n, const char *rel) {
    static const char *const kinds[][2] = {{"/__init__.py", "pkg"}, {".py", "mod"}};
    char cand[PATH_MAX / 2 + 16], path[PATH_MAX];
    struct stat st;
    for (size_t i = 0; i < 2; i++) {
        snprintf(cand, sizeof(cand), "%s%s", rel, kinds[i][0]);
        if (host_path(s, cand, true, path, sizeof(path)) == 0 && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode)) {
            answer(s, to, n, '+', kinds[i][1], 3);
            return;
        }
    }
    answer_errno(s, to, n, ENOENT, NULL);
}

static void serve_read(struct session *s, const char *to, unsigned long n, const char *path,
                       double off, double want) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        answer_errno(s, to, n, fd < 0 ? errno : EISDIR, NULL);
        if (fd >= 0) {
            close(fd);
        }
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
    close(fd);
}

static int do_write(const char *path, double off, const uint8_t *data, size_t len, bool create,
                    bool excl) {
    int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_TRUNC : 0);
    int fd = open(path, flags | (excl ? O_EXCL : 0), 0644);
    if (fd < 0) {
        return errno;
    }
    int err = 0;
    if (len > 0 &&
        (!(off >= 0 && off < 1e15) || pwrite(fd, data, len, (off_t)off) != (ssize_t)len)) {
        err = off >= 0 ? errno : EINVAL;
    }
    close(fd);
    return err;
}

// One file question (the mount's): op and path from its JSON; data after the JSON line.
static void serve_file(struct session *s, const char *to, unsigned long n, const cJSON *q,
                       const uint8_t *data, size_t len) {
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "op"));
    // A path with an escaped NUL is cut there by cJSON: still a path beneath the directory.
    const char *rel = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "path"));
    double off = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "off"));
    static const char *const writes[] = {"create", "write", "mkdir", "remove", "rmdir", "rename"};
    bool is_write = false;
    for (size_t i = 0; op != NULL && i < sizeof(writes) / sizeof(writes[0]); i++) {
        is_write |= strcmp(op, writes[i]) == 0;
    }
    char path[PATH_MAX], dst[PATH_MAX];
    if (op == NULL || rel == NULL) {
        answer_errno(s, to, n, EINVAL, "malformed question");
        return;
    }
    if (is_write && !s->mount_rw) {
        answer_errno(s, to, n, EROFS, "mounted read-only (mqboard mount --rw)");
        return;
    }
    if (strcmp(op, "find") == 0) {
        serve_find(s, to, n, rel);
        return;
    }
    bool exists =
        !(strcmp(op, "create") == 0 || strcmp(op, "mkdir") == 0 || strcmp(op, "remove") == 0 ||
          strcmp(op, "rmdir") == 0 || strcmp(op, "rename") == 0 || strcmp(op, "write") == 0);
    int err = host_path(s, rel, exists, path, sizeof(path));
    if (err == 0 && is_write && strcmp(path, s->mount_root) == 0) {
        err = EPERM; // the mounted directory itself is never removed or replaced
    }
    if (err != 0) {
        answer_errno(s, to, n, err, err == EACCES ? "outside the mounted directory" : NULL);
        return;
    }
    if (strcmp(op, "stat") == 0) {
        serve_stat(s, to, n, path);
    } else if (strcmp(op, "list") == 0) {
        serve_list(s, to, n, path);
    } else if (strcmp(op, "read") == 0) {
        serve_read(s, to, n, path, off,
                   cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(q, "len")));
    } else if (strcmp(op, "create") == 0 || strcmp(op, "write") == 0) {
        bool create = op[0] == 'c';
        err = do_write(path, create ? 0 : off, data, create ? 0 : len, create,
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "excl")));
    } else if (strcmp(op, "mkdir") == 0) {
        err = mkdir(path, 0755) == 0 ? 0 : errno;
    } else if (strcmp(op, "remove") == 0) {
        err = unlink(path) == 0 ? 0 : errno;
    } else if (strcmp(op, "rmdir") == 0) {
        err = rmdir(path) == 0 ? 0 : errno;
    } else if (strcmp(op, "rename") == 0) {
        const char *to_rel = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q, "to"));
        err = to_rel == NULL ? EINVAL : host_path(s, to_rel, false, dst, sizeof(dst));
        err = err != 0 ? err : rename(path, dst) == 0 ? 0 : errno;
    } else {
        err = ENOSYS;
    }
    if (err != 0) {
        answer_errno(s, to, n, err, NULL);
    } else if (is_write) {
        answer(s, to, n, '+', NULL, 0);
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
