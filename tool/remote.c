// Board-side programs synthesized with eval, and the parsing of their JSON-lines output.
#define _GNU_SOURCE
#include "remote.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

const char REMOTE_PRELUDE[] = "import uos,ujson\n"
                              "try:\n"
                              " import uhashlib as _h,ubinascii as _b\n"
                              "except ImportError:\n"
                              " import hashlib as _h,binascii as _b\n"
                              "def _sha(p):\n"
                              " h=_h.sha256()\n"
                              " with open(p,'rb') as f:\n"
                              "  while 1:\n"
                              "   b=f.read(4096)\n"
                              "   if not b:break\n"
                              "   h.update(b)\n"
                              " return _b.hexlify(h.digest()).decode()\n"
                              "def _err(e,p):\n"
                              " print(ujson.dumps({'errno':e.args[0],'path':p}))\n";

char *py_str(const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *lit = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return lit;
}

int remote_run(struct tool *t, const char *what, const char *program,
               void (*line)(void *ctx, const char *text, void *json), void *ctx) {
    size_t n = strlen(REMOTE_PRELUDE) + strlen(program) + 64;
    char *src = malloc(n);
    snprintf(src, n, "%s%s\ndel _sha,_err\n", REMOTE_PRELUDE, program);
    char *out = NULL;
    int code = run_capture(t, src, &out);
    free(src);
    if (code != EXIT_OK) {
        free(out);
        return code;
    }
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(l);
        const cJSON *eno = cJSON_GetObjectItemCaseSensitive(j, "errno");
        if (cJSON_IsNumber(eno)) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "path");
            char *path = tool_escape(cJSON_IsString(p) ? p->valuestring : "?");
            tool_error(t, "%s: %s: %s", what, path,
                       eno->valuedouble > 0 && eno->valuedouble < 4096
                           ? strerror((int)eno->valuedouble)
                           : "error");
            free(path);
            code = EXIT_BOARD;
        } else if (j != NULL && line != NULL) {
            line(ctx, l, j);
        } else {
            char *esc = tool_escape(l);
            tool_error(t, "%s: unexpected output from the board: %s", what, esc);
            free(esc);
            code = EXIT_BOARD;
        }
        cJSON_Delete(j);
    }
    free(out);
    return code;
}

// One listing line from the board (untrusted): malformed lines are skipped; at most
// REMOTE_LIST_MAX entries are kept.
static void add_entry(void *ctx, const char *line, void *json) {
    (void)json;
    struct rlist *l = ctx;
    struct rentry e;
    if (l->n >= REMOTE_LIST_MAX || !parse_entry(line, &e)) {
        return;
    }
    l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = e;
}

int remote_list(struct tool *t, const char *dir, bool recursive, bool sha, struct rlist *out) {
    return remote_list_ex(t, dir, recursive, sha, false, out);
}

int remote_list_ex(struct tool *t, const char *dir, bool recursive, bool sha, bool missing_ok,
                   struct rlist *out) {
    static const char fmt[] = "def _ls(d,r,s):\n"
                              " for e in uos.ilistdir(d):\n"
                              "  p=('' if d=='/' else d)+'/'+e[0]\n"
                              "  k=e[1]&0x4000\n"
                              "  print(ujson.dumps([p,1 if k else 0,e[3] if len(e)>3 else 0,"
                              "_sha(p) if s and not k else '']))\n"
                              "  if k and r:_ls(p,r,s)\n"
                              "try:\n"
                              " _t=uos.stat(%s)\n"
                              " if _t[0]&0x4000:_ls(%s,%d,%d)\n"
                              " else:print(ujson.dumps([%s,0,_t[6],_sha(%s) if %d else '']))\n"
                              "except OSError as e:\n"
                              " if not(%d and e.args[0]==2):_err(e,%s)\n"
                              "del _ls\n";
    memset(out, 0, sizeof(*out));
    char *d = py_str(dir);
    size_t n = sizeof(fmt) + 6 * strlen(d) + 16;
    char *prog = malloc(n);
    snprintf(prog, n, fmt, d, d, recursive, sha, d, d, sha, missing_ok, d);
    int code = remote_run(t, "ls", prog, add_entry, out);
    free(prog);
    free(d);
    return code;
}

void rlist_free(struct rlist *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
