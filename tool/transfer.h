// What the file commands share (cmd_file.c: put, cp, edit; cmd_get.c: get, cat; cmd_ota.c).
#ifndef TOOL_TRANSFER_H
#define TOOL_TRANSFER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "tool.h"

#define SHA256_HEX 64

mode_t current_umask(void);
// n bytes as 2n lower-case hex digits and a NUL.
void hex_encode(const uint8_t *b, size_t n, char *out);
// The SHA-256 of a board file, computed on the board (for boards without xput/xget).
int remote_sha(struct tool *t, const char *path, char out[SHA256_HEX + 1]);
// Opens a local regular file for reading (said on failure: EXIT_LOCAL).
int open_local(struct tool *t, const char *local, FILE **f, uint64_t *size);
// Streams f to the board: cmd is "xput" (hash first, windowed), "ota" (hash in the tail,
// windowed) or "put" (the original: 1400-byte chunks, no acknowledgements).
int stream_up(struct tool *t, FILE *f, uint64_t size, const char *cmd, const char *tail,
              const struct board_caps *caps, const char *label, bool *isdir);
bool path_is_dir(const char *p);
// a/b (malloc'd); path_base: the last name of a path, trailing slashes ignored (malloc'd).
char *path_join(const char *a, const char *b);
char *path_base(const char *path);

#endif
