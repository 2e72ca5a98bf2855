// mqboard's eval, exec and run: send Python source (any size), print the board's output as
// it arrives, forward Ctrl-C (and --timeout-run) to the board as an interrupt.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"

// Sends src as one message, or as several when it is bigger than one message may be.
static int send_source(struct session *s, const char *src, size_t len) {
    size_t chunk = MQB_CHUNK_MAX;
    uint16_t seq = 0;
    size_t off = 0;
    do {
        size_t n = len - off < chunk ? len - off : chunk;
        int code = session_send(s, NULL, seq++, off + n == len, (const uint8_t *)src + off, n);
        if (code != EXIT_OK) {
            return code;
        }
        off += n;
    } while (off < len);
    return EXIT_OK;
}

// Asks the board to raise KeyboardInterrupt in the running eval of the current command (or
// to drop it if it still waits in the board's queue).
static void send_interrupt(struct tool *t) {
    struct session *s = &t->session;
    session_send_aside(s, "interrupt", s->id);
    session_flush(s);
    if (t->opts.verbose) {
        fprintf(stderr, "mqboard: interrupting the eval on the board\n");
    }
}

// After an interrupt, the eval has this long to end before the interrupt is sent again, and
// this many times before mqboard gives up on it.
#define INTERRUPT_AGAIN_S 2.0
#define INTERRUPT_TRIES 3

// An interrupt is due (Ctrl-C, a signal, or --timeout-run): sends it, again every
// INTERRUPT_AGAIN_S while the eval goes on. Returns EXIT_OK to keep waiting, or the exit code
// when mqboard leaves (asked to, or the board did not stop the eval).
// The exit code of an eval that was interrupted: 124 when --timeout-run did it first.
static int interrupted(const struct session *s) {
    return s->ran_out ? EXIT_TIMEOUT_RUN : EXIT_INTERRUPTED;
}

static int on_interrupt(struct tool *t, int *tries) {
    struct session *s = &t->session;
    // The first interrupt says whose it is; a Ctrl-C after the deadline makes it the user's.
    s->ran_out = (*tries == 0 || s->ran_out) && !s->by_user;
    send_interrupt(t);
    if (tool_leaving) {
        return EXIT_INTERRUPTED;
    }
    if (++*tries > INTERRUPT_TRIES) {
        tool_error(t,
                   "the board did not stop the eval after %d interrupts in %.0f s (stuck in C "
                   "code, or catching KeyboardInterrupt); it may still run: 'mqboard reset' "
                   "stops it",
                   INTERRUPT_TRIES, INTERRUPT_TRIES * INTERRUPT_AGAIN_S);
        return interrupted(s);
    }
    s->interrupt_at = tool_now() + INTERRUPT_AGAIN_S;
    return EXIT_OK;
}

// Writes eval output; a closed stdout (EPIPE: `| head`) ends the wait.
static int write_output(struct tool *t, FILE *out, const struct reply *r, bool *ends_nl) {
    if (r->len == 0) {
        return EXIT_OK;
    }
    if (fwrite(r->data, 1, r->len, out) != r->len || fflush(out) != 0) {
        if (t->opts.verbose) {
            fprintf(stderr, "mqboard: output closed: %s\n", strerror(errno));
        }
        return EXIT_LOCAL;
    }
    *ends_nl = r->data[r->len - 1] == '\n';
    return EXIT_OK;
}

// Receives the reply stream of an eval into out. *ends_nl tracks whether the output so far
// ends with a newline.
static int receive_output(struct tool *t, FILE *out, bool *ends_nl) {
    struct session *s = &t->session;
    struct mqb_seq seq;
    mqb_seq_init(&seq);
    int tries = 0;
    for (;;) {
        struct reply r;
        int code = session_recv(s, -1, &r);
        if (code == RECV_INTERRUPT) {
            code = on_interrupt(t, &tries);
            if (code != EXIT_OK) {
                return code;
            }
            continue;
        }
        if (code == RECV_BUSY) {
            send_interrupt(t); // takes our eval out of the board's queue
            return EXIT_BOARD;
        }
        if (code == RECV_RESET) { // the code reset the board (it is back)
            return tries > 0 ? interrupted(s) : EXIT_OK;
        }
        if (code != EXIT_OK) {
            if (code == EXIT_CONN || code == EXIT_TIMEOUT) {
                send_interrupt(t); // whatever still runs for us on the board is not wanted
            }
            return code;
        }
        if (r.is_err) {
            fflush(out);
            if (!*ends_nl) {
                fputc('\n', out);
                *ends_nl = true;
            }
            report_board_error(t, &r);
            return tries > 0 ? interrupted(s) : EXIT_BOARD;
        }
        bool single = mqb_hdr_is_single(&r.hdr);
        if (!single) {
            enum mqb_err err = mqb_seq_check(&seq, &r.hdr);
            if (err == MQB_ERR_DUP) {
                continue;
            }
            if (err != MQB_OK) {
                tool_error(t, "a reply message was lost (%s)", mqb_strerror(err));
                return EXIT_BOARD;
            }
        }
        if (write_output(t, out, &r, ends_nl) != EXIT_OK) {
            send_interrupt(t);
            return EXIT_LOCAL;
        }
        if (single || r.hdr.last) {
            // The code asked for a reset (machine.soft_reset(), an alias): the next command
            // must find the board, as after `mqboard reset`.
            code = s->resetting && s->user_code ? session_reset_wait(s) : EXIT_OK;
            code = code == RECV_INTERRUPT ? EXIT_INTERRUPTED : code;
            return code != EXIT_OK ? code : tries > 0 ? interrupted(s) : EXIT_OK;
        }
    }
}

// --no-follow: the eval was sent; it runs on without us.
static int detach(struct tool *t) {
    struct session *s = &t->session;
    session_flush(s);
    if (!t->opts.quiet) {
        fprintf(t->err,
                "mqboard: started on the board as eval %s (not followed; its output is "
                "dropped; 'mqboard reset' stops it)\n",
                s->id);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", s->id);
    cJSON_AddBoolToObject(j, "detached", true);
    t->result = j;
    return EXIT_OK;
}

int run_eval(struct tool *t, const char *src, size_t len, FILE *out) {
    struct session *s = &t->session;
    int code = session_connect(t);
    if (code == EXIT_OK) {
        code = session_begin(s, "eval");
    }
    if (code != EXIT_OK) {
        return code;
    }
    // A long eval keeps the board silent: ask whether it is alive instead of giving up.
    s->ping_on_silence = true;
    s->ran_out = false;
    if (t->opts.timeout_run > 0) {
        s->interrupt_at = tool_now() + t->opts.timeout_run;
    }
    bool ends_nl = true;
    code = send_source(s, src, len);
    if (code == EXIT_OK && t->opts.no_follow && out == t->out) {
        code = detach(t);
    } else if (code == EXIT_OK) {
        // The board interrupts the eval should mqboard vanish without a word (killed, or
        // the connection lost): the lease ends unless renewed.
        session_lease(s, true);
        code = receive_output(t, out, &ends_nl);
        session_lease(s, false);
    }
    session_end(s);
    // As the console REPL does, the result stands on a line of its own.
    if (!ends_nl) {
        fputc('\n', out);
    }
    return code;
}

int run_capture(struct tool *t, const char *src, char **out) {
    size_t len = 0;
    FILE *f = open_memstream(out, &len);
    int code = run_eval(t, src, strlen(src), f);
    fclose(f);
    return code;
}

// Reads all of a stream into a malloc'd buffer; NULL on a read error.
static char *read_all(FILE *f, size_t *len) {
    size_t cap = 65536, n = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

// The source of eval/exec: the arguments joined with spaces, or stdin for "-".
static char *source_from_args(int argc, char **argv, size_t *len) {
    if (argc == 2 && strcmp(argv[1], "-") == 0) {
        return read_all(stdin, len);
    }
    size_t n = 1;
    for (int i = 1; i < argc; i++) {
        n += strlen(argv[i]) + 1;
    }
    char *src = calloc(1, n);
    for (int i = 1; i < argc; i++) {
        strcat(src, argv[i]);
        if (i + 1 < argc) {
            strcat(src, " ");
        }
    }
    *len = strlen(src);
    return src;
}

char *eval_source(struct tool *t, int argc, char **argv, size_t *len, int *code) {
    bool run = strcmp(argv[0], "run") == 0, statements = run || strcmp(argv[0], "exec") == 0;
    if (run ? argc != 2 : argc < 2) {
        fprintf(stderr, "usage: mqboard %s %s\n", argv[0],
                run          ? "FILE"
                : statements ? "CODE|-"
                             : "EXPR|-");
        *code = EXIT_USAGE;
        return NULL;
    }
    char *src = NULL;
    if (run) {
        FILE *f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "rb");
        src = f != NULL ? read_all(f, len) : NULL;
        if (f != NULL && f != stdin) {
            fclose(f);
        }
    } else {
        src = source_from_args(argc, argv, len);
    }
    if (src == NULL) {
        tool_error(t, "cannot read '%s'%s%s", run ? argv[1] : "stdin", errno ? ": " : "",
                   errno ? strerror(errno) : "");
        *code = EXIT_LOCAL;
        return NULL;
    }
    // As statements: a trailing statement makes the board run the code as statements (an
    // expression's value is not shown), on our agent and on an original board alike; a
    // script is statements even if it is one expression.
    if (statements) {
        src = realloc(src, *len + 8);
        memcpy(src + *len, "\npass\n", 7);
        *len += 6;
    }
    return src;
}

// The mark before the result's repr in the output of eval_for_json's program.
#define RESULT_MARK "\x1eMQBR:"

// --json eval: the expression's value goes to "result" (its repr, a string), what the code
// printed to "output". The board runs a program that evaluates the source as an expression
// (or, when it is not one, runs it as statements) and prints the repr behind a mark.
static int eval_for_json(struct tool *t, const char *src) {
    char *lit = py_str(src), *prog = NULL;
    if (asprintf(&prog,
                 "_mqb_c = None\n"
                 "try:\n _mqb_c = compile(%s, '<stdin>', 'eval')\n"
                 "except SyntaxError:\n pass\n"
                 "try:\n"
                 " if _mqb_c is None:\n  exec(compile(%s, '<stdin>', 'exec'), globals())\n"
                 " else:\n"
                 "  _mqb_r = eval(_mqb_c, globals())\n"
                 "  if _mqb_r is not None:\n   print('" RESULT_MARK "' + repr(_mqb_r))\n"
                 "finally:\n"
                 " globals().pop('_mqb_c', None)\n globals().pop('_mqb_r', None)\n",
                 lit, lit) < 0) {
        free(lit);
        return EXIT_LOCAL;
    }
    free(lit);
    struct bounded kept;
    FILE *f = tool_bounded_stream(&kept, JSON_OUT_MAX);
    int code = run_eval(t, prog, strlen(prog), f);
    fclose(f);
    free(prog);
    char *out = kept.buf;
    size_t out_len = kept.len;
    t->out_json.dropped += kept.dropped; // past the bound the result line is lost too
    char *mark = NULL;
    for (char *p = out; p != NULL && (p = memmem(p, out_len - (size_t)(p - out), RESULT_MARK,
                                                 strlen(RESULT_MARK))) != NULL;
         p++) {
        mark = p; // the last one: what the code printed comes before it
    }
    size_t shown = mark != NULL ? (size_t)(mark - out) : out_len;
    if (mark != NULL) {
        char *value = mark + strlen(RESULT_MARK), *nl = memchr(value, '\n', out_len - shown);
        t->result = cJSON_CreateString(nl != NULL ? (*nl = '\0', value) : value);
    }
    if (shown > 0) {
        fwrite(out, 1, shown, t->out);
    }
    free(out);
    return code;
}

static int eval_like(struct tool *t, int argc, char **argv) {
    size_t len = 0;
    int code = EXIT_OK;
    errno = 0;
    char *src = eval_source(t, argc, argv, &len, &code);
    if (src == NULL) {
        return code;
    }
    t->session.user_code = true;
    code = t->opts.json && strcmp(argv[0], "eval") == 0 && memchr(src, '\0', len) == NULL
               ? eval_for_json(t, src)
               : run_eval(t, src, len, t->out);
    t->session.user_code = false;
    free(src);
    return code;
}

int cmd_eval(struct tool *t, int argc, char **argv) {
    return eval_like(t, argc, argv);
}

int cmd_exec(struct tool *t, int argc, char **argv) {
    return eval_like(t, argc, argv);
}

int cmd_run(struct tool *t, int argc, char **argv) {
    return eval_like(t, argc, argv);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_ping(struct tool *t, int argc, char **argv) {
    long count = 5;
    if (argc == 3 && strcmp(argv[1], "-c") == 0) {
        count = strtol(argv[2], NULL, 10);
    }
    if ((argc != 1 && argc != 3) || count < 1) {
        fprintf(stderr, "usage: mqboard ping [-c COUNT]\n");
        return EXIT_USAGE;
    }
    double *ms = calloc((size_t)count, sizeof(double));
    int code = session_connect(t);
    long i = 0;
    for (; code == EXIT_OK && i < count; i++) {
        // A round trip through the broker and the board's command path: an eval of "1".
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        code = run_eval(t, "1", 1, f);
        clock_gettime(CLOCK_MONOTONIC, &b);
        fclose(f);
        free(out);
        ms[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    }
    if (code == EXIT_OK) {
        qsort(ms, (size_t)count, sizeof(double), cmp_double);
        double sum = 0;
        for (long k = 0; k < count; k++) {
            sum += ms[k];
        }
        double p99 = ms[(count * 99) / 100];
        fprintf(t->out, "%ld evals: min %.3f / median %.3f / p99 %.3f / max %.3f ms, %.0f/s\n",
                count, ms[0], ms[count / 2], p99, ms[count - 1], 1000.0 * (double)count / sum);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "count", (double)count);
        cJSON_AddNumberToObject(j, "min_ms", ms[0]);
        cJSON_AddNumberToObject(j, "median_ms", ms[count / 2]);
        cJSON_AddNumberToObject(j, "p99_ms", p99);
        cJSON_AddNumberToObject(j, "max_ms", ms[count - 1]);
        cJSON_AddNumberToObject(j, "per_s", 1000.0 * (double)count / sum);
        t->result = j;
    }
    free(ms);
    return code;
}
