// Board-side programs that mqboard synthesizes with eval, for the commands the board does not
// implement natively (ls, rm, mkdir, ...). They use only what MicroPython and mqrepld both
// provide (uos, ujson, uhashlib, ubinascii) and print one JSON value per line, so that a
// board running the original MicroPython mqrepl.py answers them too.
#ifndef TOOL_REMOTE_H
#define TOOL_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "parse.h"
#include "tool.h"

// Entries a listing keeps at most (a board cannot make the tool allocate without bound).
#define REMOTE_LIST_MAX 1000000

struct rlist {
    struct rentry *v;
    size_t n;
};

// Lists dir (or the single file dir names) on the board; recursive descends; sha adds the
// SHA-256 of each file. Paths come back as the board spells them under dir.
int remote_list(struct tool *t, const char *dir, bool recursive, bool sha, struct rlist *out);
// The same; with missing_ok a missing dir is an empty list, not an error.
int remote_list_ex(struct tool *t, const char *dir, bool recursive, bool sha, bool missing_ok,
                   struct rlist *out);
void rlist_free(struct rlist *l);

// Runs a board program (a printf format whose %s are replaced by the Python literals of
// the paths given) that prints JSON lines; each line is handed to line(). A line
// {"errno": N, "path": P} is an error on the board: reported as "<what>: P: strerror(N)".
int remote_run(struct tool *t, const char *what, const char *program,
               void (*line)(void *ctx, const char *text, void *json), void *ctx);

// Board-side Python shared by the programs: imports and the _sha(path) helper.
extern const char REMOTE_PRELUDE[];

#endif
