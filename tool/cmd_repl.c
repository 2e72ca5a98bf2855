// mqboard repl: an interactive session on one connection, with the console REPL's rules for
// when input is complete, line editing and history (libedit), TAB completion of the board's
// names, output streamed as it is produced, Ctrl-C to interrupt, Ctrl-D to leave.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lazylib.h"
#include "tool.h"

// A repl: the tool whose board TAB completion asks, and libedit (loaded when a repl starts).
struct repl {
    struct tool *t;
    struct editline el;
};

// libedit's callbacks take no context pointer, so this is the one piece of file-level state,
// set once per repl.
static struct repl *active;

// True when src needs more lines: an open bracket or triple-quoted string, a line that ends
// with ':' or '\', or a block that has not been closed by an empty line.
static bool incomplete(const char *src, bool block) {
    int depth = 0;
    char quote = 0;
    bool triple = false;
    for (const char *p = src; *p != '\0'; p++) {
        if (quote != 0) {
            if (*p == '\\' && p[1] != '\0') {
                p++;
            } else if (triple && strncmp(p, quote == '"' ? "\"\"\"" : "'''", 3) == 0) {
                quote = 0;
                p += 2;
            } else if (!triple && (*p == quote || *p == '\n')) {
                quote = 0;
            }
        } else if (*p == '#') {
            p += strcspn(p, "\n") - 1;
        } else if (*p == '"' || *p == '\'') {
            quote = *p;
            triple = strncmp(p, *p == '"' ? "\"\"\"" : "'''", 3) == 0;
            p += triple ? 2 : 0;
        } else if (strchr("([{", *p) != NULL) {
            depth++;
        } else if (strchr(")]}", *p) != NULL) {
            depth--;
        }
    }
    size_t n = strlen(src);
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\t')) {
        n--;
    }
    bool opens = n > 0 && (src[n - 1] == ':' || src[n - 1] == '\\');
    return depth > 0 || (quote != 0 && triple) || opens || block;
}

// The names on the board that complete `text` ("name" or "obj.attr").
static char **board_names(const char *text) {
    const char *dot = strrchr(text, '.');
    char *obj = dot != NULL ? strndup(text, (size_t)(dot - text)) : NULL;
    char *pre = py_str(dot != NULL ? dot + 1 : text);
    char *objlit = obj != NULL ? py_str(obj) : NULL;
    char *src = NULL;
    if (asprintf(&src,
                 "import ujson as _j\ntry:\n"
                 " _n=dir(eval(%s)) if %d else list(globals())+dir(__builtins__)\n"
                 " print(_j.dumps(sorted(set(x for x in _n if x.startswith(%s)))))\n"
                 "except Exception:print('[]')\ndel _j\n",
                 objlit != NULL ? objlit : "''", obj != NULL, pre) < 0) {
        src = NULL;
    }
    char *out = NULL;
    FILE *quiet = active->t->err;
    active->t->err = fopen("/dev/null", "w");
    int code = src != NULL ? run_capture(active->t, src, &out) : EXIT_LOCAL;
    fclose(active->t->err);
    active->t->err = quiet;
    cJSON *j = code == EXIT_OK ? cJSON_Parse(out) : NULL;
    int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 0;
    char **matches = n > 0 ? calloc((size_t)n + 2, sizeof(char *)) : NULL;
    for (int i = 0; matches != NULL && i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(j, i);
        const char *name = cJSON_IsString(it) ? it->valuestring : "";
        if (asprintf(&matches[i + 1], "%s%s%s", obj != NULL ? obj : "", obj != NULL ? "." : "",
                     name) < 0) {
            matches[i + 1] = NULL;
        }
    }
    if (matches != NULL) {
        matches[0] = strdup(n == 1 ? matches[1] : text); // the common part: what was typed
    }
    cJSON_Delete(j);
    free(out);
    free(src);
    free(pre);
    free(objlit);
    free(obj);
    return matches;
}

// Reads a key for libedit; while none comes, the connection is served (the mount's questions
// and lease). EOF (with tool_interrupted set on Ctrl-C) ends the line.
static int repl_getc(FILE *f) {
    struct session *s = &active->t->session;
    for (;;) {
        if (tool_interrupted) {
            return EOF; // Ctrl-C came between two keys
        }
        int sock = mosquitto_socket(s->mosq);
        struct pollfd p[2] = {{.fd = fileno(f), .events = POLLIN}, {.fd = sock, .events = POLLIN}};
        if (sock >= 0 && mosquitto_want_write(s->mosq)) {
            p[1].events |= POLLOUT;
        }
        int r = poll(p, sock >= 0 ? 2 : 1, 200);
        if (r < 0 && errno == EINTR) {
            return EOF;
        }
        if (r > 0 && p[0].revents != 0) {
            unsigned char c;
            return read(fileno(f), &c, 1) == 1 ? c : EOF;
        }
        if (!session_idle(s, 0.001)) {
            return EOF;
        }
    }
}

static char **complete(const char *text, int start, int end) {
    (void)start;
    (void)end;
    *active->el.attempted_completion_over = 1; // never local file names
    *active->el.completion_append_character = '\0';
    return board_names(text);
}

// Writes to stdout and to the capture file (--capture).
struct tee {
    FILE *a, *b;
};

static ssize_t tee_write(void *cookie, const char *buf, size_t len) {
    struct tee *t = cookie;
    fwrite(buf, 1, len, t->a);
    fflush(t->a);
    if (t->b != NULL) {
        fwrite(buf, 1, len, t->b);
        fflush(t->b);
    }
    return (ssize_t)len;
}

// Reads one complete input (several lines for a block). NULL at end of input.
// True when line starts a compound statement (if, for, def, ...; a decorator): as in
// CPython's and MicroPython's REPLs it goes on until an empty line, even when its body is on
// the same line (`if x: print(1)` may be followed by `else:`).
static bool compound(const char *line) {
    static const char *const words[] = {"if",    "for",  "while", "def",
                                        "class", "with", "try",   "async"};
    line += strspn(line, " \t");
    if (line[0] == '@') {
        return true;
    }
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);
        if (strncmp(line, words[i], n) == 0 &&
            (line[n] == ' ' || line[n] == ':' || line[n] == '(' || line[n] == '\t')) {
            return strchr(line, ':') != NULL;
        }
    }
    return false;
}

static char *read_input(const struct editline *el, FILE *capture) {
    char *line = el->readline(">>> ");
    if (line == NULL) {
        return NULL;
    }
    char *src = line;
    bool block = compound(line);
    while (incomplete(src, block)) {
        size_t n = strlen(src);
        block |= n > 0 && src[n - 1] == ':';
        char *more = el->readline("... ");
        if (more == NULL || (block && more[strspn(more, " \t")] == '\0')) {
            free(more);
            break; // an empty line closes a block, as at the console
        }
        char *joined = NULL;
        if (asprintf(&joined, "%s\n%s", src, more) < 0) {
            free(more);
            break;
        }
        free(src);
        free(more);
        src = joined;
    }
    if (capture != NULL) {
        fprintf(capture, ">>> %s\n", src);
    }
    return src;
}

static const char *history_file(char *buf, size_t cap) {
    const char *home = getenv("HOME");
    snprintf(buf, cap, "%s/.mqboard_history", home != NULL ? home : ".");
    return buf;
}

int cmd_repl(struct tool *t, int argc, char **argv) {
    FILE *capture = NULL;
    if (argc == 3 && strcmp(argv[1], "--capture") == 0) {
        if ((capture = fopen(argv[2], "a")) == NULL) {
            tool_error(t, "cannot write '%s'", argv[2]);
            return EXIT_LOCAL;
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: mqboard repl [--capture FILE]\n");
        return EXIT_USAGE;
    }
    struct repl repl = {.t = t};
    const struct editline *el = &repl.el;
    int code = editline_load(t, &repl.el) ? session_connect(t) : EXIT_LOCAL;
    if (code == EXIT_OK) {
        FILE *null = fopen("/dev/null", "w");
        code = run_eval(t, "1", 1, null); // is anyone there?
        fclose(null);
    }
    if (code != EXIT_OK) {
        if (capture != NULL) {
            fclose(capture);
        }
        return code;
    }
    struct tee tee = {t->out, capture};
    cookie_io_functions_t io = {.write = tee_write};
    FILE *out = fopencookie(&tee, "w", io);
    setvbuf(out, NULL, _IONBF, 0);
    char hist[4096];
    static char word_breaks[] = " \t\n\"'`@$><=;|&{([,+-*/%";
    active = &repl;
    // Signals are ours: libedit's handlers re-raise them around its own blocking reads, and a
    // Ctrl-C that came then was lost. repl_getc sees our flag and ends the line.
    *el->catch_signals = 0;
    *el->getc_function = repl_getc;
    el->initialize();
    el->using_history();
    el->read_history(history_file(hist, sizeof(hist)));
    *el->attempted_completion_function = complete;
    *el->word_break_characters = word_breaks;

    fprintf(stderr, "Connected to board '%s'. Ctrl-C interrupts, Ctrl-D leaves.\n", t->opts.prefix);
    for (;;) {
        tool_interrupted = 0;
        tool_leaving = 0;
        char *src = read_input(el, capture);
        if (src == NULL && tool_interrupted) {
            fprintf(stderr, "\nKeyboardInterrupt\n"); // on a line of its own, as Python does
            continue;                                 // Ctrl-C at the prompt drops the line
        }
        if (src == NULL) {
            break;
        }
        if (src[strspn(src, " \t\n")] != '\0') {
            el->add_history(src);
            t->session.user_code = true;
            code = run_eval(t, src, strlen(src), out);
            t->session.user_code = false;
            if (code == EXIT_CONN || (code == EXIT_TIMEOUT && !t->session.present)) {
                free(src);
                break; // the broker or the board is gone
            }
        }
        free(src);
    }
    fprintf(stderr, "\n");
    el->write_history(hist);
    active = NULL;
    fclose(out);
    if (capture != NULL) {
        fclose(capture);
    }
    return code == EXIT_CONN ? code : EXIT_OK;
}
