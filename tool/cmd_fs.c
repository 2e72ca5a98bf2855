// mqboard's filesystem commands, synthesized as board programs (see remote.c): ls, tree, rm,
// mkdir, rmdir, mv, sha256sum, df. Paths travel as Python string literals, so no name can
// break or inject code.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "remote.h"
#include "tool.h"

// Accepts the flags in `flags` (e.g. "lr") before the arguments, and at least min_args
// arguments; returns the index of the first argument, or -1 after a usage message.
static int parse_flags(int argc, char **argv, const char *flags, bool *set, const char *usage,
                       int min_args) {
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        for (const char *c = argv[i] + 1; *c; c++) {
            const char *f = strchr(flags, *c);
            if (f == NULL) {
                fprintf(stderr, "usage: mqboard %s\n", usage);
                return -1;
            }
            set[f - flags] = true;
        }
    }
    if (argc - i < min_args) {
        fprintf(stderr, "usage: mqboard %s\n", usage);
        return -1;
    }
    return i;
}

// Shows a board path relative to the listed directory.
static const char *shown(const char *path, const char *dir) {
    size_t n = strlen(dir);
    if (strcmp(dir, ".") == 0 && strncmp(path, "./", 2) == 0) {
        return path + 2;
    }
    if (strncmp(path, dir, n) == 0 && path[n] == '/') {
        return path + n + 1;
    }
    if (strcmp(dir, "/") == 0 && path[0] == '/') {
        return path + 1;
    }
    return path;
}

static cJSON *entries_json(const struct rlist *l, const char *dir) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < l->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "path", l->v[i].path);
        cJSON_AddStringToObject(e, "name", shown(l->v[i].path, dir));
        cJSON_AddStringToObject(e, "type", l->v[i].dir ? "dir" : "file");
        cJSON_AddNumberToObject(e, "size", (double)l->v[i].size);
        cJSON_AddItemToArray(a, e);
    }
    return a;
}

// Normalizes a board directory argument: "" is ".", trailing slashes go.
static char *board_dir(const char *arg) {
    char *d = strdup(arg[0] != '\0' ? arg : ".");
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/') {
        d[--n] = '\0';
    }
    return d;
}

int cmd_ls(struct tool *t, int argc, char **argv) {
    bool f[4] = {false, false, false, false}; // -l, -r, -R (as -r), -a (every name is shown)
    int i = parse_flags(argc, argv, "lrRa", f, "ls [-lrRa] [DIR]", 0);
    f[1] |= f[2];
    if (i >= 0 && argc - i > 1) {
        fprintf(stderr, "usage: mqboard ls [-lrRa] [DIR]   (one directory)\n");
        i = -1;
    }
    if (i < 0) {
        return EXIT_USAGE;
    }
    char *dir = board_dir(i < argc ? argv[i] : ".");
    struct rlist l;
    int code = remote_list(t, dir, f[1], false, &l);
    if (code == EXIT_OK) {
        for (size_t k = 0; k < l.n && !t->opts.json; k++) {
            char *name = tool_escape(shown(l.v[k].path, dir)); // a board's names
            if (f[0]) {
                fprintf(t->out, "%c %12llu  %s%s\n", l.v[k].dir ? 'd' : '-',
                        (unsigned long long)l.v[k].size, name, l.v[k].dir ? "/" : "");
            } else {
                fprintf(t->out, "%s%s\n", name, l.v[k].dir ? "/" : "");
            }
            free(name);
        }
        t->result = entries_json(&l, dir);
    }
    rlist_free(&l);
    free(dir);
    return code;
}

int cmd_tree(struct tool *t, int argc, char **argv) {
    bool f[1] = {false}; // -s: sizes
    int i = parse_flags(argc, argv, "s", f, "tree [-s] [DIR]", 0);
    if (i < 0 || argc - i > 1) {
        fprintf(stderr, "usage: mqboard tree [-s] [DIR]\n");
        return EXIT_USAGE;
    }
    char *dir = board_dir(i < argc ? argv[i] : ".");
    struct rlist l;
    int code = remote_list(t, dir, true, false, &l);
    if (code == EXIT_OK && !t->opts.json) {
        fprintf(t->out, "%s\n", dir);
        size_t files = 0, dirs = 0;
        for (size_t k = 0; k < l.n; k++) {
            const char *rel = shown(l.v[k].path, dir);
            int depth = 0;
            for (const char *c = rel; *c; c++) {
                depth += *c == '/';
            }
            char *name = tool_escape(strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel);
            char size[24] = "";
            if (f[0] && !l.v[k].dir) {
                char h[16];
                snprintf(size, sizeof(size), " [%s]", human_size((double)l.v[k].size, h, 16));
            }
            fprintf(t->out, "%*s%s %s%s%s\n", 4 * depth, "", "|--", name, l.v[k].dir ? "/" : "",
                    size);
            free(name);
            files += !l.v[k].dir;
            dirs += l.v[k].dir;
        }
        fprintf(t->out, "\n%zu directories, %zu files\n", dirs, files);
    }
    if (code == EXIT_OK) {
        t->result = entries_json(&l, dir);
    }
    rlist_free(&l);
    free(dir);
    return code;
}

static void ignore_line(void *ctx, const char *text, void *json) {
    (void)ctx;
    (void)text;
    (void)json;
}

// Runs a program once per path argument: fmt gets the path's literal (several times).
static int per_path(struct tool *t, const char *what, const char *fmt, int argc, char **argv,
                    int first) {
    int code = EXIT_OK;
    for (int i = first; code == EXIT_OK && i < argc; i++) {
        char *p = py_str(argv[i]);
        size_t n = strlen(fmt) + 8 * strlen(p) + 16;
        char *prog = malloc(n);
        snprintf(prog, n, fmt, p, p, p, p, p, p, p, p);
        code = remote_run(t, what, prog, ignore_line, NULL);
        free(prog);
        free(p);
    }
    return code;
}

int cmd_rm(struct tool *t, int argc, char **argv) {
    bool f[3] = {false, false, false}; // -r, -f, -v
    int i = parse_flags(argc, argv, "rfv", f, "rm [-rfv] PATH...", 1);
    if (i < 0) {
        return EXIT_USAGE;
    }
    for (int k = i; k < argc; k++) {
        char *d = board_normalize(argv[k]);
        bool root = strcmp(d, "/") == 0 || strcmp(d, ".") == 0;
        free(d);
        if (root && f[0]) {
            tool_error(t, "rm -r: refusing to remove the board's root '%s'", argv[k]);
            return EXIT_USAGE;
        }
    }
    // -f: a missing path is fine (ENOENT is 2 on MicroPython and Linux).
    static const char plain[] = "try:uos.remove(%s)\nexcept OSError as e:_err(e,%s)\n";
    static const char plain_f[] =
        "try:uos.remove(%s)\nexcept OSError as e:\n if e.args[0]!=2:_err(e,%s)\n";
    static const char tree_f[] = "def _rm(p):\n"
                                 " if uos.stat(p)[0]&0x4000:\n"
                                 "  for e in list(uos.ilistdir(p)):_rm(p+'/'+e[0])\n"
                                 "  uos.rmdir(p)\n"
                                 " else:uos.remove(p)\n"
                                 "try:_rm(%s)\n"
                                 "except OSError as e:\n if e.args[0]!=2:_err(e,%s)\n"
                                 "del _rm\n";
    static const char tree[] = "def _rm(p):\n"
                               " if uos.stat(p)[0]&0x4000:\n"
                               "  for e in list(uos.ilistdir(p)):_rm(p+'/'+e[0])\n"
                               "  uos.rmdir(p)\n"
                               " else:uos.remove(p)\n"
                               "try:_rm(%s)\n"
                               "except OSError as e:_err(e,%s)\n"
                               "del _rm\n";
    const char *prog = f[0] ? (f[1] ? tree_f : tree) : (f[1] ? plain_f : plain);
    int code = per_path(t, "rm", prog, argc, argv, i);
    for (int k = i; code == EXIT_OK && f[2] && k < argc; k++) { // -v: say what went
        char *shown_path = tool_escape(argv[k]);
        fprintf(t->out, "removed '%s'\n", shown_path);
        free(shown_path);
    }
    return code;
}

int cmd_mkdir(struct tool *t, int argc, char **argv) {
    bool f[1] = {false};
    int i = parse_flags(argc, argv, "p", f, "mkdir [-p] DIR...", 1);
    if (i < 0) {
        return EXIT_USAGE;
    }
    static const char plain[] = "try:uos.mkdir(%s)\nexcept OSError as e:_err(e,%s)\n";
    // -p: every level, an existing one is fine (EEXIST is 17 on MicroPython and Linux).
    static const char parents[] = "_p=''\n"
                                  "try:\n"
                                  " for _d in %s.split('/'):\n"
                                  "  _p+=_d\n"
                                  "  if _p and _p!='/':\n"
                                  "   try:uos.mkdir(_p)\n"
                                  "   except OSError as e:\n"
                                  "    if e.args[0]!=17:raise\n"
                                  "  _p+='/'\n"
                                  "except OSError as e:_err(e,%s)\n";
    return per_path(t, "mkdir", f[0] ? parents : plain, argc, argv, i);
}

int cmd_touch(struct tool *t, int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mqboard touch FILE...\n");
        return EXIT_USAGE;
    }
    static const char prog[] = "try:open(%s,'ab').close()\nexcept OSError as e:_err(e,%s)\n";
    return per_path(t, "touch", prog, argc, argv, 1);
}

int cmd_rmdir(struct tool *t, int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mqboard rmdir DIR...\n");
        return EXIT_USAGE;
    }
    static const char prog[] = "try:uos.rmdir(%s)\nexcept OSError as e:_err(e,%s)\n";
    return per_path(t, "rmdir", prog, argc, argv, 1);
}

int cmd_mv(struct tool *t, int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mqboard mv SRC DST\n");
        return EXIT_USAGE;
    }
    // Into DST when DST is a directory, as mv does; a DST that ends with '/' must be one.
    // An error names the path it is about: the source when it is missing, else the target.
    static const char fmt[] = "_s=%s\n_d=%s\n"
                              "try:\n"
                              " _p=_s\n"
                              " uos.stat(_s)\n"
                              " _p=_d\n"
                              " try:_k=uos.stat(_d)[0]&0x4000\n"
                              " except OSError:\n"
                              "  if _d.endswith('/'):raise\n"
                              "  _k=0\n"
                              " if _d.endswith('/') and not _k:raise OSError(20)\n"
                              " if _k:_d=_d.rstrip('/')+'/'+_s.rstrip('/').split('/')[-1]\n"
                              " uos.rename(_s,_d)\n"
                              "except OSError as e:_err(e,_p)\n"
                              "del _s,_d,_p\n";
    char *s = py_str(argv[1]), *d = py_str(argv[2]);
    size_t n = sizeof(fmt) + strlen(s) + strlen(d);
    char *prog = malloc(n);
    snprintf(prog, n, fmt, s, d);
    int code = remote_run(t, "mv", prog, ignore_line, NULL);
    free(prog);
    free(s);
    free(d);
    return code;
}

struct sums {
    struct tool *t;
    cJSON *json;
};

static void print_sum(void *ctx, const char *text, void *json) {
    struct sums *s = ctx;
    (void)text;
    const cJSON *p = cJSON_GetArrayItem(json, 0), *h = cJSON_GetArrayItem(json, 1);
    if (cJSON_IsString(p) && cJSON_IsString(h)) {
        if (!s->t->opts.json) {
            char *hs = tool_escape(h->valuestring), *ps = tool_escape(p->valuestring);
            fprintf(s->t->out, "%s  %s\n", hs, ps);
            free(hs);
            free(ps);
        }
        cJSON_AddStringToObject(s->json, p->valuestring, h->valuestring);
    }
}

int cmd_sha256sum(struct tool *t, int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mqboard sha256sum FILE...\n");
        return EXIT_USAGE;
    }
    struct sums sums = {t, cJSON_CreateObject()};
    int code = EXIT_OK;
    for (int i = 1; i < argc; i++) {
        char *p = py_str(argv[i]);
        size_t n = 3 * strlen(p) + 96;
        char *prog = malloc(n);
        snprintf(prog, n, "try:print(ujson.dumps([%s,_sha(%s)]))\nexcept OSError as e:_err(e,%s)",
                 p, p, p);
        int c = remote_run(t, "sha256sum", prog, print_sum, &sums);
        code = code == EXIT_OK ? c : code; // like sha256sum: go on, fail at the end
        free(prog);
        free(p);
    }
    t->result = sums.json;
    return code;
}

static void print_df(void *ctx, const char *text, void *json) {
    struct tool *t = ctx;
    double v[5];
    (void)json;
    if (!parse_statvfs(text, v)) {
        tool_error(t, "df: the board's answer is not a statvfs tuple");
        return;
    }
    double size = v[1] * v[2], avail = v[1] * v[4], used = v[1] * (v[2] - v[3]);
    char a[16], b[16], c[16];
    if (!t->opts.json) {
        fprintf(t->out, "%8s %8s %8s %4s\n%8s %8s %8s %3.0f%%\n", "Size", "Used", "Avail", "Use",
                human_size(size, a, sizeof(a)), human_size(used, b, sizeof(b)),
                human_size(avail, c, sizeof(c)), size > 0 ? 100 * used / size : 0);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "size", size);
    cJSON_AddNumberToObject(j, "used", used);
    cJSON_AddNumberToObject(j, "avail", avail);
    t->result = j;
}

int cmd_df(struct tool *t, int argc, char **argv) {
    if (argc > 2) {
        fprintf(stderr, "usage: mqboard df [PATH]\n");
        return EXIT_USAGE;
    }
    char *p = py_str(argc == 2 ? argv[1] : "/");
    size_t n = 2 * strlen(p) + 96;
    char *prog = malloc(n);
    snprintf(prog, n,
             "try:print(ujson.dumps(list(uos.statvfs(%s))[:5]))\n"
             "except OSError as e:_err(e,%s)",
             p, p);
    int code = remote_run(t, "df", prog, print_df, t);
    free(prog);
    free(p);
    return code;
}
