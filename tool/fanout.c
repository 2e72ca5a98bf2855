// Many boards at once (pdsh's way): the targets of a group, a prefix pattern or --all run the
// same command line, at most --parallel at a time, each in a child process with its own
// connection; their output comes back line by line behind "PREFIX: ", then a summary (ok,
// failed, offline). Exit 0 only if every board succeeded. With --json: one document with a
// result per board.
#define _GNU_SOURCE
#include <fcntl.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tool.h"

#define LINE_MAX_BYTES 65536 // a longer line is cut there

struct child {
    const char *prefix;
    pid_t pid;
    int fd[2]; // stdout, stderr; -1 when closed
    char *buf[2];
    size_t len[2];
    int code;
    bool cut; // its --json document was over FANOUT_JSON_MAX
};

// Prints the complete lines in c->buf[i] behind the prefix; with flush, the rest too.
static void emit(struct tool *t, struct child *c, int i, bool flush) {
    FILE *to = i == 0 ? t->out : t->err;
    if (c->buf[i] == NULL) {
        return; // nothing came
    }
    size_t start = 0;
    for (size_t k = 0; k < c->len[i]; k++) {
        bool nl = c->buf[i][k] == '\n';
        if (nl || k - start >= LINE_MAX_BYTES) {
            tool_prefixed_line(to, c->prefix, c->buf[i] + start, k - start);
            start = nl ? k + 1 : k; // a cut keeps the byte it was made at
        }
    }
    if (flush && start < c->len[i]) {
        tool_prefixed_line(to, c->prefix, c->buf[i] + start, c->len[i] - start);
        start = c->len[i];
    }
    memmove(c->buf[i], c->buf[i] + start, c->len[i] - start);
    c->len[i] -= start;
    fflush(to);
}

static void start(struct tool *t, struct child *c, int (*body)(struct tool *, void *), void *ctx) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) {
        c->code = EXIT_LOCAL;
        c->pid = -1;
        return;
    }
    fflush(NULL);
    c->pid = fork();
    if (c->pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        int null = open("/dev/null", O_RDONLY); // many boards cannot share one keyboard
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
        close(out[0]);
        close(err[0]);
        t->opts.prefix = c->prefix;
        _exit(body(t, ctx));
    }
    close(out[1]);
    close(err[1]);
    c->fd[0] = out[0];
    c->fd[1] = err[0];
}

// Reads what the running children wrote; reaps those that are done.
static void service(struct tool *t, struct child *v, int n, bool json) {
    struct pollfd p[2 * FANOUT_MAX];
    int map[2 * FANOUT_MAX], np = 0;
    for (int k = 0; k < n && np < 2 * FANOUT_MAX; k++) {
        for (int i = 0; i < 2; i++) {
            if (v[k].fd[i] >= 0) {
                p[np] = (struct pollfd){.fd = v[k].fd[i], .events = POLLIN};
                map[np++] = k * 2 + i;
            }
        }
    }
    if (np == 0 || poll(p, (nfds_t)np, 500) <= 0) {
        return;
    }
    for (int j = 0; j < np; j++) {
        if (!(p[j].revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        struct child *c = &v[map[j] / 2];
        int i = map[j] % 2;
        char buf[8192];
        ssize_t r = read(c->fd[i], buf, sizeof(buf));
        if (r <= 0) {
            close(c->fd[i]);
            c->fd[i] = -1;
            if (!json || i == 1) {
                emit(t, c, i, true);
            }
            continue;
        }
        if (json && i == 0 && c->len[i] + (size_t)r > FANOUT_JSON_MAX) {
            c->cut = true; // its document is dropped (and said), not kept without bound
            continue;
        }
        c->buf[i] = realloc(c->buf[i], c->len[i] + (size_t)r + 1);
        memcpy(c->buf[i] + c->len[i], buf, (size_t)r);
        c->len[i] += (size_t)r;
        c->buf[i][c->len[i]] = '\0';
        if (!json || i == 1) {
            emit(t, c, i, false);
        }
    }
}

void fanout_summary(struct tool *t, int ok, int failed, int offline, int n, void *results) {
    if (!t->opts.json) {
        fprintf(t->out, "%d ok, %d failed, %d offline or silent (of %d boards)\n", ok, failed,
                offline, n);
    }
    cJSON *summary = cJSON_CreateObject();
    cJSON_AddNumberToObject(summary, "ok", ok);
    cJSON_AddNumberToObject(summary, "failed", failed);
    cJSON_AddNumberToObject(summary, "offline", offline);
    cJSON_AddItemToObject(summary, "boards", results);
    t->result = summary;
}

int fanout(struct tool *t, const char *const *targets, int n, int (*body)(struct tool *, void *),
           void *ctx) {
    struct child *v = calloc((size_t)n, sizeof(*v));
    int par = t->opts.parallel > 0 ? t->opts.parallel : FANOUT_DEFAULT;
    bool json = t->opts.json;
    int next = 0, active = 0;
    while (next < n || active > 0) {
        while (next < n && active < par) {
            v[next] = (struct child){.prefix = targets[next], .fd = {-1, -1}, .code = -1};
            start(t, &v[next], body, ctx);
            active += v[next].pid > 0;
            next++;
        }
        service(t, v, next, json);
        for (int k = 0; k < next; k++) {
            int status;
            if (v[k].pid > 0 && v[k].code < 0 && v[k].fd[0] < 0 && v[k].fd[1] < 0 &&
                waitpid(v[k].pid, &status, 0) == v[k].pid) {
                v[k].code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                active--;
            }
        }
    }
    int ok = 0, failed = 0, offline = 0;
    cJSON *results = cJSON_CreateObject();
    for (int k = 0; k < n; k++) {
        ok += v[k].code == EXIT_OK;
        offline += v[k].code == EXIT_TIMEOUT;
        failed += v[k].code != EXIT_OK && v[k].code != EXIT_TIMEOUT;
        if (json) {
            cJSON *doc = v[k].buf[0] != NULL && !v[k].cut ? cJSON_Parse(v[k].buf[0]) : NULL;
            if (doc == NULL) {
                doc = cJSON_CreateObject();
                cJSON_AddNumberToObject(doc, "exit_code", v[k].code);
            }
            if (v[k].cut) {
                cJSON_AddStringToObject(doc, "error",
                                        "mqboard: its --json document was over "
                                        "1 MiB: dropped (run it alone)");
            }
            cJSON_AddItemToObject(results, v[k].prefix, doc);
        }
        free(v[k].buf[0]);
        free(v[k].buf[1]);
    }
    fanout_summary(t, ok, failed, offline, n, results);
    free(v);
    return ok == n ? EXIT_OK : EXIT_BOARD;
}

static int count(const cJSON *summary, const char *what) {
    return (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(summary, what));
}

int rollout(struct tool *t, const char *const *targets, int n, int (*body)(struct tool *, void *),
            void *ctx) {
    int par = t->opts.parallel > 0 ? t->opts.parallel : FANOUT_DEFAULT;
    int done = 0, ok = 0, failed = 0, offline = 0;
    cJSON *boards = cJSON_CreateObject();
    for (int wave = t->opts.canary; done < n; wave = par) {
        int m = wave < n - done ? wave : n - done;
        if (!t->opts.json) {
            fprintf(t->out, "rollout: %s of %d board%s (%d of %d done)\n",
                    done == 0 ? "canary wave" : "wave", m, m == 1 ? "" : "s", done, n);
            fflush(t->out);
        }
        fanout(t, targets + done, m, body, ctx);
        cJSON *summary = t->result;
        t->result = NULL;
        ok += count(summary, "ok");
        failed += count(summary, "failed");
        offline += count(summary, "offline");
        cJSON *b = cJSON_DetachItemFromObjectCaseSensitive(summary, "boards"), *it;
        while (b != NULL && (it = b->child) != NULL) {
            cJSON_AddItemToObject(boards, it->string, cJSON_DetachItemViaPointer(b, it));
        }
        cJSON_Delete(b);
        cJSON_Delete(summary);
        done += m;
        if (failed + offline > t->opts.max_failures && done < n) {
            tool_error(t,
                       "rollout stopped: %d board%s failed, more than --max-failures %d; %d "
                       "not touched",
                       failed + offline, failed + offline == 1 ? "" : "s", t->opts.max_failures,
                       n - done);
            break;
        }
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "ok", ok);
    cJSON_AddNumberToObject(r, "failed", failed);
    cJSON_AddNumberToObject(r, "offline", offline);
    cJSON *untouched = cJSON_AddArrayToObject(r, "not_started");
    for (int k = done; k < n; k++) {
        cJSON_AddItemToArray(untouched, cJSON_CreateString(targets[k]));
    }
    cJSON_AddItemToObject(r, "boards", boards);
    t->result = r;
    return ok == n ? EXIT_OK : EXIT_BOARD;
}
