// mqboard: the host tool's entry point: global options (MQBOARD_* variables, then command-line
// options), and the command table that every subcommand is dispatched through.
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

struct command {
    const char *name;
    int (*run)(struct tool *t, int argc, char **argv);
    const char *args;
    const char *summary;
};

static const struct command commands[] = {
    {"eval", cmd_eval, "EXPR|-", "evaluate Python on the board (expression or statements)"},
    {"put", cmd_put, "LOCAL... REMOTE", "copy files to the board (REMOTE/ for a directory)"},
    {"get", cmd_get, "REMOTE [LOCAL|-]", "copy a file from the board (stdout by default)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: mqboard [options] COMMAND [args]\n\n"
               "options (defaults from MQBOARD_SERVER, MQBOARD_PORT, MQBOARD_PREFIX, "
               "MQBOARD_TIMEOUT, ...):\n"
               "  -s, --server HOST       broker host (default 127.0.0.1)\n"
               "  -p, --port PORT         broker port (default 1883, 8883 with TLS)\n"
               "      --prefix PREFIX     the board's topic prefix, e.g. esp32/kitchen\n"
               "      --topic PREFIX      same as --prefix (the original tool's name)\n"
               "  -T, --timeout SECONDS   give up after this much silence from the board "
               "(default 10)\n"
               "  -u, --username USER     broker user name\n"
               "  -P, --password PASS     broker password (MQBOARD_PASSWORD)\n"
               "      --tls               use TLS (system CA certificates)\n"
               "      --cafile FILE       use TLS with this CA certificate\n"
               "      --psk-identity ID   TLS-PSK identity\n"
               "      --psk HEXKEY        TLS-PSK key (MQBOARD_PSK)\n"
               "  -v, --verbose           say more (twice: every message)\n"
               "  -V, --version           print the version\n"
               "  -h, --help              this help\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(f, "  %-5s %-18s %s\n", commands[i].name, commands[i].args, commands[i].summary);
    }
    fprintf(f, "\nexit codes: 0 ok, 1 board error, 2 usage, 3 timeout, 4 connection, "
               "5 local file\n");
}

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

static bool parse_number(const char *what, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "mqboard: invalid %s '%s'\n", what, s);
        return false;
    }
    *out = v;
    return true;
}

// Settings from the environment, as the original tool read them.
static bool opts_from_env(struct tool_opts *o) {
    double port = 0, timeout = 10;
    o->server = env_or("MQBOARD_SERVER", "127.0.0.1");
    o->prefix = env_or("MQBOARD_PREFIX", env_or("MQBOARD_TOPIC", NULL));
    o->username = env_or("MQBOARD_USERNAME", env_or("MQBOARD_USER", NULL));
    o->password = env_or("MQBOARD_PASSWORD", NULL);
    o->cafile = env_or("MQBOARD_CAFILE", NULL);
    o->psk_identity = env_or("MQBOARD_PSK_IDENTITY", NULL);
    o->psk = env_or("MQBOARD_PSK", NULL);
    o->tls = env_or("MQBOARD_TLS", NULL) != NULL;
    const char *p = env_or("MQBOARD_PORT", NULL);
    const char *t = env_or("MQBOARD_TIMEOUT", NULL);
    if ((p != NULL && !parse_number("MQBOARD_PORT", p, 1, 65535, &port)) ||
        (t != NULL && !parse_number("MQBOARD_TIMEOUT", t, 0.1, 86400, &timeout))) {
        return false;
    }
    o->port = (int)port;
    o->timeout = timeout;
    return true;
}

// Parses the global options; returns the index of the command or -1 after a message.
static int parse_opts(struct tool_opts *o, int argc, char **argv) {
    enum { OPT_PREFIX = 256, OPT_TLS, OPT_CAFILE, OPT_PSK_ID, OPT_PSK };
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"topic", required_argument, NULL, OPT_PREFIX},
        {"timeout", required_argument, NULL, 'T'},
        {"username", required_argument, NULL, 'u'},
        {"password", required_argument, NULL, 'P'},
        {"tls", no_argument, NULL, OPT_TLS},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"psk-identity", required_argument, NULL, OPT_PSK_ID},
        {"psk", required_argument, NULL, OPT_PSK},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    double v;
    int c;
    while ((c = getopt_long(argc, argv, "+s:p:T:u:P:vVh", opts, NULL)) != -1) {
        switch (c) {
        case 's': o->server = optarg; break;
        case 'p':
            if (!parse_number("port", optarg, 1, 65535, &v)) {
                return -1;
            }
            o->port = (int)v;
            break;
        case OPT_PREFIX: o->prefix = optarg; break;
        case 'T':
            if (!parse_number("timeout", optarg, 0.1, 86400, &o->timeout)) {
                return -1;
            }
            break;
        case 'u': o->username = optarg; break;
        case 'P': o->password = optarg; break;
        case OPT_TLS: o->tls = true; break;
        case OPT_CAFILE: o->cafile = optarg; break;
        case OPT_PSK_ID: o->psk_identity = optarg; break;
        case OPT_PSK: o->psk = optarg; break;
        case 'v': o->verbose++; break;
        case 'V': printf("mqboard " MQBOARD_VERSION "\n"); exit(EXIT_OK);
        case 'h': usage(stdout); exit(EXIT_OK);
        default: usage(stderr); return -1;
        }
    }
    return optind;
}

static bool check_opts(struct tool_opts *o) {
    if (o->prefix == NULL || o->prefix[0] == '\0') {
        fprintf(stderr, "mqboard: which board? Give --prefix PREFIX (or MQBOARD_PREFIX)\n");
        return false;
    }
    if ((o->psk == NULL) != (o->psk_identity == NULL)) {
        fprintf(stderr, "mqboard: --psk and --psk-identity go together\n");
        return false;
    }
    if (o->port == 0) {
        o->port = o->tls || o->cafile != NULL || o->psk != NULL ? 8883 : 1883;
    }
    return true;
}

int main(int argc, char **argv) {
    static struct tool t; // large (the session), so not on the stack
    if (!opts_from_env(&t.opts)) {
        return EXIT_USAGE;
    }
    int first = parse_opts(&t.opts, argc, argv);
    if (first < 0) {
        return EXIT_USAGE;
    }
    if (first >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const struct command *cmd = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, argv[first]) == 0) {
            cmd = &commands[i];
        }
    }
    if (cmd == NULL) {
        fprintf(stderr, "mqboard: unknown command '%s' (see mqboard --help)\n", argv[first]);
        return EXIT_USAGE;
    }
    if (!check_opts(&t.opts)) {
        return EXIT_USAGE;
    }
    int code = cmd->run(&t, argc - first, argv + first);
    session_close(&t.session);
    return code;
}
