// mqboard mount: the board sees a local directory as /remote for the rest of the invocation
// (its files, and `import` looks there first), as mpremote's mount does. The board asks for
// what it needs over MQTT (ask.c answers); the mount ends when mqboard leaves (or, should it
// vanish, when its lease runs out on the board).
#define _GNU_SOURCE
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tool.h"

int cmd_mount(struct tool *t, int argc, char **argv) {
    bool rw = false, unsafe = false;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-w") == 0 || strcmp(argv[i], "--rw") == 0) {
            rw = true;
        } else if (strcmp(argv[i], "-l") == 0 || strcmp(argv[i], "--unsafe-links") == 0) {
            unsafe = true;
        } else if (dir == NULL && argv[i][0] != '-') {
            dir = argv[i];
        } else {
            dir = NULL;
            argc = 0;
        }
    }
    if (dir == NULL || argc == 0) {
        fprintf(stderr,
                "usage: mqboard mount [--rw] [-l|--unsafe-links] LOCALDIR [+ COMMAND...]\n");
        return EXIT_USAGE;
    }
    struct session *s = &t->session;
    char real[PATH_MAX];
    struct stat st;
    if (realpath(dir, real) == NULL || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tool_error(t, "'%s' is not a directory", dir);
        return EXIT_LOCAL;
    }
    if (s->mount_root != NULL) {
        tool_error(t, "a directory is already mounted (one mount per invocation)");
        return EXIT_USAGE;
    }
    int code = session_connect(t);
    code = code != EXIT_OK ? code : session_begin(s, "mount");
    code = code != EXIT_OK
               ? code
               : session_send(s, NULL, MQB_SEQ_MASK, true, (const uint8_t *)(rw ? "rw" : "ro"), 2);
    struct reply r;
    code = code != EXIT_OK ? code : session_recv(s, -1, &r);
    if (code == EXIT_OK && r.is_err) {
        char *text = strndup((const char *)r.data, r.len), *why = tool_escape(text);
        tool_error(t, "board '%s' cannot mount a directory: %s", t->opts.prefix, why);
        free(why);
        free(text);
        code = EXIT_BOARD;
    }
    if (code == EXIT_OK) {
        s->mount_root = strdup(real);
        s->mount_rw = rw;
        s->mount_unsafe = unsafe;
        snprintf(s->mount_id, sizeof(s->mount_id), "%s", s->id);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s->mount_lease_at = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + t->opts.lease / 3.0;
        fprintf(stderr, "Local directory %s is mounted at /remote (%s%s)\n", real,
                rw ? "writable" : "read-only", unsafe ? "; symlinks may lead out of it" : "");
    }
    session_end(s);
    if (code == EXIT_OK) { // the board works in /remote, as with mpremote's mount
        FILE *null = fopen("/dev/null", "w");
        FILE *err = t->err;
        t->err = null;
        static const char cd[] = "import uos\ntry:uos.chdir('/remote')\nexcept OSError:pass\n";
        run_eval(t, cd, sizeof(cd) - 1, null); // an agent that cannot keeps its directory
        t->err = err;
        fclose(null);
    }
    return code;
}
