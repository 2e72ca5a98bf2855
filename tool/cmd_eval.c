// mqboard's eval command: send Python source, print the board's output as it arrives.
#include <stdlib.h>
#include <string.h>

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

// Receives the reply stream of an eval into out. *ends_nl tracks whether the output so far
// ends with a newline.
static int receive_output(struct session *s, FILE *out, bool *ends_nl) {
    struct mqb_seq seq;
    mqb_seq_init(&seq);
    for (;;) {
        struct reply r;
        int code = session_recv(s, -1, &r);
        if (code != EXIT_OK) {
            return code;
        }
        if (r.is_err) {
            fflush(out);
            if (!*ends_nl) {
                fputc('\n', out);
                *ends_nl = true;
            }
            return report_board_error(&r);
        }
        bool single = mqb_hdr_is_single(&r.hdr);
        if (!single) {
            enum mqb_err err = mqb_seq_check(&seq, &r.hdr);
            if (err == MQB_ERR_DUP) {
                continue;
            }
            if (err != MQB_OK) {
                fprintf(stderr, "mqboard: a reply message was lost (%s)\n", mqb_strerror(err));
                return EXIT_BOARD;
            }
        }
        if (r.len > 0) {
            fwrite(r.data, 1, r.len, out);
            fflush(out);
            *ends_nl = r.data[r.len - 1] == '\n';
        }
        if (single || r.hdr.last) {
            return EXIT_OK;
        }
    }
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
    bool ends_nl = true;
    code = send_source(s, src, len);
    if (code == EXIT_OK) {
        code = receive_output(s, out, &ends_nl);
    }
    session_end(s);
    // As the console REPL does, the result stands on a line of its own.
    if (!ends_nl) {
        fputc('\n', out);
    }
    return code;
}

// Reads all of stdin into a malloc'd buffer.
static char *read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    *len = n;
    return buf;
}

int cmd_eval(struct tool *t, int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mqboard eval EXPR|-\n");
        return EXIT_USAGE;
    }
    size_t len = 0;
    char *src;
    if (argc == 2 && strcmp(argv[1], "-") == 0) {
        src = read_stdin(&len);
    } else {
        // Several words are joined with spaces, as a shell user would expect.
        for (int i = 1; i < argc; i++) {
            len += strlen(argv[i]) + 1;
        }
        src = calloc(1, len + 1);
        for (int i = 1; i < argc; i++) {
            strcat(src, argv[i]);
            if (i + 1 < argc) {
                strcat(src, " ");
            }
        }
        len = strlen(src);
    }
    int code = run_eval(t, src, len, stdout);
    free(src);
    return code;
}
