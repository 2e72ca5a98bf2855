// The board's filesystem beneath --root: path resolution that cannot escape it, reads, and
// atomic writes through a temporary file (see fs.h).
#define _GNU_SOURCE
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum mqb_err fs_errno(int err) {
    switch (err) {
    case ENOENT: return MQB_ERR_NOENT;
    case EISDIR: return MQB_ERR_ISDIR;
    case ENOTDIR: return MQB_ERR_NOTDIR;
    case EACCES:
    case EPERM:
    case EROFS: return MQB_ERR_ACCESS;
    case ENOSPC:
    case EDQUOT: return MQB_ERR_NOSPC;
    case ENAMETOOLONG: return MQB_ERR_BADPATH;
    case ELOOP: return MQB_ERR_ESCAPE;
    default: return MQB_ERR_IO;
    }
}

enum mqb_err fs_init(struct board_fs *fs, const char *root) {
    struct stat st;
    memset(fs, 0, sizeof(*fs));
    for (int i = 0; i < FS_MAX_FILES; i++) {
        fs->files[i].fd = -1;
    }
    if (realpath(root, fs->root) == NULL) {
        return fs_errno(errno);
    }
    if (stat(fs->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return MQB_ERR_NOTDIR;
    }
    fs->root_len = strlen(fs->root);
    if (fs->root_len == 1) {
        fs->root_len = 0; // root "/": every real path is beneath it
    }
    return MQB_OK;
}

static void drop_old(struct fs_file *f) {
    if (f->old_kept) {
        char old[sizeof(f->tmp) + 8];
        snprintf(old, sizeof(old), "%s.old", f->tmp);
        unlink(old);
        f->old_kept = false;
    }
}

void fs_drop_replaced(struct board_fs *fs) {
    for (int i = 0; i < FS_MAX_FILES; i++) {
        drop_old(&fs->files[i]);
    }
}

void fs_deinit(struct board_fs *fs) {
    for (int i = 0; i < FS_MAX_FILES; i++) {
        if (fs->files[i].fd >= 0) {
            fs_close(fs, i, false);
        }
    }
    fs_drop_replaced(fs);
}

static bool inside(const struct board_fs *fs, const char *real) {
    return strncmp(real, fs->root, fs->root_len) == 0 &&
           (real[fs->root_len] == '/' || real[fs->root_len] == '\0');
}

// Lexically normalizes a board path into "a/b/c" (no leading '/', no "." or "..").
static enum mqb_err normalize(const char *path, char *out, size_t cap) {
    size_t len = 0;
    const char *p = path;
    while (*p != '\0') {
        const char *end = strchrnul(p, '/');
        size_t n = (size_t)(end - p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (len == 0) {
                return MQB_ERR_ESCAPE;
            }
            char *slash = memrchr(out, '/', len);
            len = slash == NULL ? 0 : (size_t)(slash - out);
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (len + n + 2 > cap) {
                return MQB_ERR_BADPATH;
            }
            if (len > 0) {
                out[len++] = '/';
            }
            memcpy(out + len, p, n);
            len += n;
        }
        p = *end == '/' ? end + 1 : end;
    }
    out[len] = '\0';
    return MQB_OK;
}

enum mqb_err fs_resolve(const struct board_fs *fs, const char *path, char *out, size_t cap) {
    char rel[PATH_MAX];
    enum mqb_err err = normalize(path, rel, sizeof(rel));
    if (err != MQB_OK) {
        return err;
    }
    size_t t = strlen(FS_TMP_DIR);
    if (strncmp(rel, FS_TMP_DIR, t) == 0 && (rel[t] == '\0' || rel[t] == '/')) {
        return MQB_ERR_ACCESS; // the agent's own temporary files
    }
    int n = snprintf(out, cap, "%s%s%s", fs->root, rel[0] != '\0' ? "/" : "", rel);
    if (n < 0 || (size_t)n >= cap) {
        return MQB_ERR_BADPATH;
    }
    return MQB_OK;
}

// Checks that an existing host path, with every symlink followed, is beneath the root.
static enum mqb_err check_real(const struct board_fs *fs, const char *host) {
    char real[PATH_MAX];
    if (realpath(host, real) == NULL) {
        return fs_errno(errno);
    }
    return inside(fs, real) ? MQB_OK : MQB_ERR_ESCAPE;
}

// Creates the missing directories above host (a path beneath the root), checking each
// existing one so that a symlink cannot lead the creation outside.
static enum mqb_err make_parents(const struct board_fs *fs, const char *host) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", host);
    for (char *p = dir + fs->root_len + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        enum mqb_err err = check_real(fs, dir);
        if (err == MQB_ERR_NOENT) {
            err = mkdir(dir, 0755) == 0 ? MQB_OK : fs_errno(errno);
        }
        *p = '/';
        if (err != MQB_OK) {
            return err;
        }
    }
    return MQB_OK;
}

static int file_slot(struct board_fs *fs) {
    for (int i = 0; i < FS_MAX_FILES; i++) {
        if (fs->files[i].fd < 0) {
            drop_old(&fs->files[i]); // before its names are reused
            return i;
        }
    }
    return -1;
}

enum mqb_err fs_open_read(struct board_fs *fs, const char *path, int *fh, uint64_t *size) {
    char host[PATH_MAX];
    struct stat st;
    int slot = file_slot(fs);
    enum mqb_err err = fs_resolve(fs, path, host, sizeof(host));
    if (err == MQB_OK) {
        err = check_real(fs, host);
    }
    if (err != MQB_OK) {
        return err;
    }
    if (slot < 0) {
        return MQB_ERR_BUSY;
    }
    // O_NONBLOCK: opening a FIFO or a device must not block the event loop; only regular
    // files are served.
    int fd = open(host, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return fs_errno(errno);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? MQB_ERR_ISDIR : MQB_ERR_NOTREG;
    }
    fcntl(fd, F_SETFL, 0);
    fs->files[slot].fd = fd;
    fs->files[slot].write = false;
    *fh = slot;
    *size = (uint64_t)st.st_size;
    return MQB_OK;
}

enum mqb_err fs_open_write(struct board_fs *fs, const char *path, int *fh) {
    char host[PATH_MAX];
    struct stat st;
    int slot = file_slot(fs);
    enum mqb_err err = fs_resolve(fs, path, host, sizeof(host));
    if (err == MQB_OK && strlen(host) == fs->root_len) {
        err = MQB_ERR_ISDIR; // the root itself
    }
    if (err == MQB_OK) {
        err = make_parents(fs, host);
    }
    if (err != MQB_OK) {
        return err;
    }
    if (slot < 0) {
        return MQB_ERR_BUSY;
    }
    if (stat(host, &st) == 0 && S_ISDIR(st.st_mode)) {
        return MQB_ERR_ISDIR;
    }
    struct fs_file *f = &fs->files[slot];
    char tmp[sizeof(f->tmp)];
    snprintf(tmp, sizeof(tmp), "%s/" FS_TMP_DIR, fs->root);
    if (lstat(tmp, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return MQB_ERR_IO; // gone or replaced (by a symlink?): not written through
    }
    strcat(tmp, "/put-XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    memcpy(f->tmp, tmp, sizeof(tmp));
    if (fd < 0) {
        return fs_errno(errno);
    }
    fchmod(fd, 0644);
    snprintf(f->target, sizeof(f->target), "%s", host);
    f->fd = fd;
    f->write = true;
    f->written = f->flushed = 0;
    *fh = slot;
    return MQB_OK;
}

static struct fs_file *file_get(struct board_fs *fs, int fh) {
    if (fh < 0 || fh >= FS_MAX_FILES || fs->files[fh].fd < 0) {
        return NULL;
    }
    return &fs->files[fh];
}

enum mqb_err fs_read(struct board_fs *fs, int fh, uint8_t *buf, size_t cap, size_t *n) {
    struct fs_file *f = file_get(fs, fh);
    if (f == NULL) {
        return MQB_ERR_STATE;
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(f->fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return fs_errno(errno);
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    *n = got;
    return MQB_OK;
}

// Writeback of a put's temporary file is started every this many bytes (sync_file_range),
// so that the fsync at its commit has little left to wait for.
#define WRITEBACK_STEP (1u << 20)

enum mqb_err fs_write(struct board_fs *fs, int fh, const uint8_t *buf, size_t len) {
    struct fs_file *f = file_get(fs, fh);
    if (f == NULL || !f->write) {
        return MQB_ERR_STATE;
    }
    enum mqb_err err = fs_write_fd(f->fd, buf, len);
    f->written += err == MQB_OK ? len : 0;
    if (err == MQB_OK && f->written - f->flushed >= WRITEBACK_STEP) {
        // Asynchronous: starts the disk writes, waits for none (an error shows at fsync).
        (void)sync_file_range(f->fd, (off_t)f->flushed, (off_t)(f->written - f->flushed),
                              SYNC_FILE_RANGE_WRITE);
        f->flushed = f->written;
    }
    return err;
}

enum mqb_err fs_write_fd(int fd, const uint8_t *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return fs_errno(errno);
        }
        buf += w;
        len -= (size_t)w;
    }
    return MQB_OK;
}

enum mqb_err fs_close(struct board_fs *fs, int fh, bool commit) {
    struct fs_file *f = file_get(fs, fh);
    enum mqb_err err = MQB_OK;
    if (f == NULL) {
        return MQB_ERR_STATE;
    }
    if (f->write && commit && fsync(f->fd) != 0) {
        err = fs_errno(errno);
    }
    if (close(f->fd) != 0 && err == MQB_OK && f->write) {
        err = fs_errno(errno);
    }
    f->fd = -1;
    if (!f->write) {
        return MQB_OK;
    }
    if (commit && err == MQB_OK) {
        // The file replaced keeps a second name until the reply has left (fs_drop_replaced):
        // rename then frees none of its blocks while the host waits (ms for a big file).
        char old[sizeof(f->tmp) + 8];
        snprintf(old, sizeof(old), "%s.old", f->tmp);
        f->old_kept = link(f->target, old) == 0;
        if (rename(f->tmp, f->target) != 0) {
            err = fs_errno(errno);
        }
    }
    if (!commit || err != MQB_OK) {
        unlink(f->tmp);
    }
    return err;
}

int fs_clean_temps(const struct board_fs *fs) {
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/" FS_TMP_DIR, fs->root);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return -1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        if (dfd >= 0) {
            close(dfd);
        }
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.' && unlinkat(dfd, e->d_name, 0) == 0;
    }
    closedir(d);
    return n;
}
