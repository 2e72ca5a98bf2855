// mqboard sync: bring board directories up to date, copying only files whose SHA-256
// differs. Two forms: `sync SPEC` (the original mqsync specification format) and
// `sync LOCALDIR REMOTEDIR` (a tree, with --delete for extras).
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "remote.h"
#include "tool.h"

struct sync_opts {
    bool dry_run, delete_extra;
    unsigned put, removed, same, skipped, failed;
};

static int local_sha(struct tool *t, const char *path, char out[65]) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        tool_error(t, "cannot read '%s': %s", path, strerror(errno));
        return EXIT_LOCAL;
    }
    int code = file_sha256(f, out);
    fclose(f);
    if (code != EXIT_OK) {
        tool_error(t, "cannot read '%s'", path);
    }
    return code;
}

static const struct rentry *find_entry(const struct rlist *l, const char *path) {
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].path, path) == 0) {
            return &l->v[i];
        }
    }
    return NULL;
}

static char *join(const char *a, const char *b) {
    char *r;
    size_t n = strlen(a);
    return asprintf(&r, "%s%s%s", a, n > 0 && a[n - 1] == '/' ? "" : "/", b) < 0 ? NULL : r;
}

// Copies local to remote when the board's copy is missing or differs. opts_check/no_update
// are the spec's --check-only and --no-update.
static int sync_file(struct tool *t, struct sync_opts *o, const struct rlist *have,
                     const char *local, const char *remote, bool check_only, bool no_update) {
    char sha[65];
    int code = local_sha(t, local, sha);
    if (code != EXIT_OK) {
        return code;
    }
    const struct rentry *e = find_entry(have, remote);
    if (e != NULL && strcmp(e->sha, sha) == 0) {
        o->same++;
        if (t->opts.verbose) {
            fprintf(t->out, "  ok   %s\n", remote);
        }
        return EXIT_OK;
    }
    const char *why = e == NULL ? "missing" : "changed";
    if (check_only || (no_update && e != NULL)) {
        fprintf(t->out, "  skip %-7s %s -> %s\n", why, local, remote);
        o->skipped++;
        return EXIT_OK;
    }
    fprintf(t->out, "  put  %-7s %s -> %s\n", why, local, remote);
    code = o->dry_run ? EXIT_OK : put_file(t, local, remote);
    // The summary counts what happened.
    o->put += code == EXIT_OK;
    o->failed += code != EXIT_OK;
    return code;
}

// True when path (symlinks followed) stays beneath root_real.
static bool stays_in(const char *root_real, const char *path) {
    char real[PATH_MAX];
    size_t n = strlen(root_real);
    return realpath(path, real) != NULL && strncmp(real, root_real, n) == 0 &&
           (real[n] == '/' || real[n] == '\0');
}

// Collects the files of the local tree; symlinks that lead out of it are skipped (and said).
static void local_walk(struct tool *t, const char *root_real, const char *dir, const char *rel,
                       char ***files, size_t *n) {
    char *path = rel[0] ? join(dir, rel) : strdup(dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char *r = rel[0] ? join(rel, e->d_name) : strdup(e->d_name);
        char *full = join(dir, r);
        struct stat st;
        if (!stays_in(root_real, full)) {
            tool_error(t, "%s: a symlink out of the tree: skipped", full);
            free(r);
        } else if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
            local_walk(t, root_real, dir, r, files, n);
            free(r);
        } else {
            *files = realloc(*files, (*n + 1) * sizeof(char *));
            (*files)[(*n)++] = r;
        }
        free(full);
    }
    if (d != NULL) {
        closedir(d);
    }
    free(path);
}

static int sync_tree(struct tool *t, struct sync_opts *o, const char *local, const char *rdir) {
    char remote[MQB_PATH_MAX + 1];
    snprintf(remote, sizeof(remote), "%s", rdir);
    for (size_t len = strlen(remote); len > 1 && remote[len - 1] == '/'; len--) {
        remote[len - 1] = '\0';
    }
    // A missing or mistyped LOCALDIR must never read as "an empty tree" (with --delete it
    // would empty the board's directory), as rsync refuses.
    char root_real[PATH_MAX];
    struct stat st;
    if (realpath(local, root_real) == NULL || stat(root_real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tool_error(t, "sync: '%s' is not a local directory", local);
        return EXIT_LOCAL;
    }
    struct rlist have;
    int code = remote_list_ex(t, remote, true, true, true, &have);
    for (size_t i = 0; code == EXIT_OK && i < have.n; i++) {
        if (!have.v[i].dir && strcmp(have.v[i].path, remote) == 0) {
            tool_error(t, "sync: '%s' on the board is a file, not a directory: nothing done",
                       remote);
            code = EXIT_BOARD;
        }
    }
    char **files = NULL;
    size_t n = 0;
    if (code == EXIT_OK) {
        local_walk(t, root_real, local, "", &files, &n);
    }
    int partial = EXIT_OK;
    for (size_t i = 0; code == EXIT_OK && i < n; i++) {
        char *l = join(local, files[i]), *r = join(remote, files[i]);
        if (!topic_safe(r)) { // named, skipped, and the sync fails at the end
            tool_error(t,
                       "%s: a board path cannot contain '+', '#' or control characters: "
                       "skipped",
                       r);
            partial = EXIT_BOARD;
            o->skipped++;
        } else {
            code = sync_file(t, o, &have, l, r, false, false);
        }
        free(l);
        free(r);
    }
    // --delete: files on the board that the local tree does not have.
    for (size_t i = 0; code == EXIT_OK && o->delete_extra && i < have.n; i++) {
        const char *rel = remote_sub(have.v[i].path, remote);
        bool keep = have.v[i].dir || rel == NULL; // never what is not under REMOTE
        for (size_t k = 0; !keep && k < n; k++) {
            keep = strcmp(files[k], rel) == 0;
        }
        if (!keep) {
            fprintf(t->out, "  rm   %s\n", have.v[i].path);
            char *argv[] = {"rm", have.v[i].path, NULL};
            code = o->dry_run ? EXIT_OK : cmd_rm(t, 2, argv);
            o->removed += code == EXIT_OK;
            o->failed += code != EXIT_OK;
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(files[i]);
    }
    free(files);
    rlist_free(&have);
    return code != EXIT_OK ? code : partial;
}

// One target-directory block of a spec: its options and its "src_dir: files" lines.
struct block {
    char *target;
    bool check_only, no_update;
    char **srcs, **dsts;
    size_t n;
};

static char *next_tok(char **p) {
    while (isspace((unsigned char)**p)) {
        (*p)++;
    }
    if (**p == '\0') {
        return NULL;
    }
    char *start = *p;
    while (**p && !isspace((unsigned char)**p)) {
        (*p)++;
    }
    if (**p) {
        *(*p)++ = '\0';
    }
    return start;
}

static void block_add(struct block *b, const char *src, const char *dst) {
    b->srcs = realloc(b->srcs, (b->n + 1) * sizeof(char *));
    b->dsts = realloc(b->dsts, (b->n + 1) * sizeof(char *));
    b->srcs[b->n] = strdup(src);
    b->dsts[b->n] = strdup(dst);
    b->n++;
}

// Adds one source token (a file, a glob, or src->dst) under src_dir.
static int add_source(struct tool *t, struct block *b, const char *src_dir, char *tok,
                      const char *where) {
    char *arrow = strstr(tok, "->");
    char *src;
    if (arrow != NULL) {
        *arrow = '\0';
        if (strpbrk(tok, "*?[") != NULL) {
            tool_error(t, "%s: cannot mix wildcards with '->' in %s", where, tok);
            return EXIT_USAGE;
        }
        src = join(src_dir, tok);
        block_add(b, src, arrow + 2);
        free(src);
        return EXIT_OK;
    }
    src = join(src_dir, tok);
    glob_t g;
    if (strpbrk(tok, "*?[") != NULL && glob(src, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char *copy = strdup(g.gl_pathv[i]);
            block_add(b, g.gl_pathv[i], basename(copy));
            free(copy);
        }
        globfree(&g);
    } else if (strpbrk(tok, "*?[") == NULL) {
        char *copy = strdup(tok);
        block_add(b, src, basename(copy));
        free(copy);
    }
    free(src);
    return EXIT_OK;
}

static int parse_spec(struct tool *t, FILE *f, const char *name, struct block **out, size_t *n) {
    char line[4096], where[4200];
    int lnum = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lnum++;
        snprintf(where, sizeof(where), "%s:%d", name, lnum);
        char *hash = strchr(line, '#');
        if (hash) {
            *hash = '\0';
        }
        char *p = line;
        bool indented = isspace((unsigned char)line[0]);
        char *tok = next_tok(&p);
        if (tok == NULL) {
            continue;
        }
        if (!indented) {
            size_t len = strlen(tok);
            if (tok[len - 1] != ':') {
                tool_error(t, "%s: expected a target directory followed by ':'", where);
                return EXIT_USAGE;
            }
            tok[len - 1] = '\0';
            *out = realloc(*out, (*n + 1) * sizeof(**out));
            struct block *b = &(*out)[(*n)++];
            memset(b, 0, sizeof(*b));
            b->target = strdup(tok);
            while ((tok = next_tok(&p)) != NULL) {
                b->check_only |= strcmp(tok, "--check-only") == 0;
                b->no_update |= strcmp(tok, "--no-update") == 0;
            }
            continue;
        }
        if (*n == 0) {
            tool_error(t, "%s: no target directory set", where);
            return EXIT_USAGE;
        }
        const char *src_dir = ".";
        if (tok[strlen(tok) - 1] == ':') {
            tok[strlen(tok) - 1] = '\0';
            src_dir = tok;
            tok = next_tok(&p);
        }
        for (; tok != NULL; tok = next_tok(&p)) {
            int code = add_source(t, &(*out)[*n - 1], src_dir, tok, where);
            if (code != EXIT_OK) {
                return code;
            }
        }
    }
    return EXIT_OK;
}

static int sync_spec(struct tool *t, struct sync_opts *o, const char *spec) {
    FILE *f = fopen(spec, "r");
    if (f == NULL) {
        tool_error(t, "cannot read spec '%s': %s", spec, strerror(errno));
        return EXIT_LOCAL;
    }
    struct block *blocks = NULL;
    size_t nb = 0;
    int code = parse_spec(t, f, spec, &blocks, &nb);
    fclose(f);
    for (size_t i = 0; code == EXIT_OK && i < nb; i++) {
        struct block *b = &blocks[i];
        fprintf(t->out, "Target directory %s\n", b->target);
        struct rlist have;
        code = remote_list_ex(t, b->target, false, true, true, &have);
        for (size_t k = 0; code == EXIT_OK && k < b->n; k++) {
            char *r = join(b->target, b->dsts[k]);
            code = sync_file(t, o, &have, b->srcs[k], r, b->check_only, b->no_update);
            free(r);
        }
        rlist_free(&have);
    }
    for (size_t i = 0; i < nb; i++) {
        for (size_t k = 0; k < blocks[i].n; k++) {
            free(blocks[i].srcs[k]);
            free(blocks[i].dsts[k]);
        }
        free(blocks[i].srcs);
        free(blocks[i].dsts);
        free(blocks[i].target);
    }
    free(blocks);
    return code;
}

int cmd_sync(struct tool *t, int argc, char **argv) {
    struct sync_opts o = {0};
    char *args[2];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 || strcmp(argv[i], "--dry-run") == 0) {
            o.dry_run = true;
        } else if (strcmp(argv[i], "--delete") == 0) {
            o.delete_extra = true;
        } else if (argv[i][0] == '-' || nargs == 2) {
            nargs = 3;
            break;
        } else {
            args[nargs++] = argv[i];
        }
    }
    if (nargs < 1 || nargs > 2 || (nargs == 1 && o.delete_extra)) {
        fprintf(stderr, "usage: mqboard sync [-n|--dry-run] SPEC\n"
                        "       mqboard sync [-n|--dry-run] [--delete] LOCALDIR REMOTEDIR\n");
        return EXIT_USAGE;
    }
    int code = nargs == 1 ? sync_spec(t, &o, args[0]) : sync_tree(t, &o, args[0], args[1]);
    if (code == EXIT_OK || code == EXIT_BOARD) {
        fprintf(t->out, "%s%u put, %u removed, %u unchanged, %u skipped",
                o.dry_run ? "(dry run) " : "", o.put, o.removed, o.same, o.skipped);
        fprintf(t->out, o.failed > 0 ? ", %u failed\n" : "\n", o.failed);
        if (t->opts.json) { // the counts as numbers (the lines above are in "output")
            t->result = cJSON_CreateObject();
            cJSON_AddBoolToObject(t->result, "dry_run", o.dry_run);
            cJSON_AddNumberToObject(t->result, "put", o.put);
            cJSON_AddNumberToObject(t->result, "removed", o.removed);
            cJSON_AddNumberToObject(t->result, "unchanged", o.same);
            cJSON_AddNumberToObject(t->result, "skipped", o.skipped);
            cJSON_AddNumberToObject(t->result, "failed", o.failed);
        }
    }
    return code;
}
