// The board's filesystem: a host directory (--root) seen as the board's "/". Every board path
// resolves beneath it; writes go to a temporary file that replaces the target only on commit.
#ifndef AGENT_FS_H
#define AGENT_FS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/err.h"

#define FS_MAX_FILES 16
// Temporary files of puts live in this directory beneath the root (same filesystem, so the
// final rename is atomic), under short random names: never a user's file, hidden from
// listings, and board paths into it are refused.
#define FS_TMP_DIR ".mqb-tmp"

struct fs_file {
    int fd; // -1 when the slot is free
    bool write;
    uint64_t written, flushed; // bytes written; bytes whose writeback was started
    char tmp[PATH_MAX + 32];   // FS_TMP_DIR/put-XXXXXX beneath the root
    char target[PATH_MAX];
    bool old_kept; // the file a commit replaced still has the name tmp + ".old"
};

struct board_fs {
    char root[PATH_MAX]; // realpath of the root directory
    size_t root_len;
    struct fs_file files[FS_MAX_FILES];
};

// Opens the board root (which must be an existing directory). Returns MQB_ERR_NOENT or
// MQB_ERR_NOTDIR otherwise.
enum mqb_err fs_init(struct board_fs *fs, const char *root);

// Closes every open file; temporary files are removed.
void fs_deinit(struct board_fs *fs);

// Removes the files that commits replaced (fs_close keeps them under a second name, so that
// freeing their blocks does not delay the reply): call once the replies have left.
void fs_drop_replaced(struct board_fs *fs);

// Resolves a board path ("/a/b", "a/b") to a host path beneath the root, into out.
// MQB_ERR_ESCAPE when ".." or a symlink would leave the root; MQB_ERR_BADPATH when too long.
enum mqb_err fs_resolve(const struct board_fs *fs, const char *path, char *out, size_t cap);

enum mqb_err fs_open_read(struct board_fs *fs, const char *path, int *fh, uint64_t *size);
// Creates missing parent directories (beneath the root) and a temporary file beside path.
enum mqb_err fs_open_write(struct board_fs *fs, const char *path, int *fh);
enum mqb_err fs_read(struct board_fs *fs, int fh, uint8_t *buf, size_t cap, size_t *n);
enum mqb_err fs_write(struct board_fs *fs, int fh, const uint8_t *buf, size_t len);
// Closes fh; for a write handle, commit=true makes the data durable and renames it over the
// target, commit=false removes the temporary file.
enum mqb_err fs_close(struct board_fs *fs, int fh, bool commit);

// Writes all of buf to a plain file descriptor (retrying short writes and EINTR).
enum mqb_err fs_write_fd(int fd, const uint8_t *buf, size_t len);

// Removes temporary files left in FS_TMP_DIR by an agent that was killed mid-put (and
// creates the directory). Returns how many were removed, or -1 when it cannot be made.
int fs_clean_temps(const struct board_fs *fs);

// The one place where errno becomes an mqb error.
enum mqb_err fs_errno(int err);

#endif
