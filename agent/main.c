// mqrepld: the device agent's entry point: settings from options and MQREPLD_* variables.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mqrepld [options]\n"
               "  -s, --server HOST        broker host (MQREPLD_SERVER, default 127.0.0.1)\n"
               "  -p, --port PORT          broker port (MQREPLD_PORT, default 1883)\n"
               "      --prefix PREFIX      board prefix, e.g. esp32/kitchen (MQREPLD_PREFIX)\n"
               "      --root DIR           the board's filesystem (MQREPLD_ROOT, default .)\n"
               "      --client-id ID       MQTT client id (MQREPLD_CLIENT_ID)\n"
               "  -u, --username USER      (MQREPLD_USERNAME)\n"
               "  -P, --password PASS      (MQREPLD_PASSWORD)\n"
               "      --cafile FILE        TLS with this CA (MQREPLD_CAFILE)\n"
               "      --psk-identity ID    TLS-PSK identity (MQREPLD_PSK_IDENTITY)\n"
               "      --psk HEXKEY         TLS-PSK key (MQREPLD_PSK)\n"
               "      --keepalive SECONDS  MQTT keepalive (MQREPLD_KEEPALIVE, default 30)\n"
               "  -v, --verbose            log each command on stderr\n"
               "  -V, --version            print the version\n"
               "  -h, --help               this help\n");
}

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

static int parse_int(const char *what, const char *s, int lo, int hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "mqrepld: invalid %s '%s' (expected %d..%d)\n", what, s, lo, hi);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    struct agent_config cfg = {
        .server = env_or("MQREPLD_SERVER", "127.0.0.1"),
        .prefix = env_or("MQREPLD_PREFIX", NULL),
        .root = env_or("MQREPLD_ROOT", "."),
        .client_id = env_or("MQREPLD_CLIENT_ID", NULL),
        .username = env_or("MQREPLD_USERNAME", NULL),
        .password = env_or("MQREPLD_PASSWORD", NULL),
        .cafile = env_or("MQREPLD_CAFILE", NULL),
        .psk_identity = env_or("MQREPLD_PSK_IDENTITY", NULL),
        .psk = env_or("MQREPLD_PSK", NULL),
    };
    cfg.port = parse_int("port", env_or("MQREPLD_PORT", "1883"), 1, 65535);
    cfg.keepalive = parse_int("keepalive", env_or("MQREPLD_KEEPALIVE", "30"), 5, 65535);
    enum { OPT_PREFIX = 256, OPT_ROOT, OPT_CLIENT_ID, OPT_CAFILE, OPT_PSK_ID, OPT_PSK, OPT_KA };
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"root", required_argument, NULL, OPT_ROOT},
        {"client-id", required_argument, NULL, OPT_CLIENT_ID},
        {"username", required_argument, NULL, 'u'},
        {"password", required_argument, NULL, 'P'},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"psk-identity", required_argument, NULL, OPT_PSK_ID},
        {"psk", required_argument, NULL, OPT_PSK},
        {"keepalive", required_argument, NULL, OPT_KA},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:p:u:P:vVh", opts, NULL)) != -1) {
        switch (c) {
        case 's': cfg.server = optarg; break;
        case 'p': cfg.port = parse_int("port", optarg, 1, 65535); break;
        case OPT_PREFIX: cfg.prefix = optarg; break;
        case OPT_ROOT: cfg.root = optarg; break;
        case OPT_CLIENT_ID: cfg.client_id = optarg; break;
        case 'u': cfg.username = optarg; break;
        case 'P': cfg.password = optarg; break;
        case OPT_CAFILE: cfg.cafile = optarg; break;
        case OPT_PSK_ID: cfg.psk_identity = optarg; break;
        case OPT_PSK: cfg.psk = optarg; break;
        case OPT_KA: cfg.keepalive = parse_int("keepalive", optarg, 5, 65535); break;
        case 'v': cfg.verbose++; break;
        case 'V': printf("mqrepld " MQREPLD_VERSION "\n"); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "mqrepld: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (cfg.prefix == NULL || cfg.prefix[0] == '\0') {
        fprintf(stderr, "mqrepld: --prefix is required (the board's topic prefix, "
                        "e.g. --prefix esp32/kitchen)\n");
        return 2;
    }
    if ((cfg.psk == NULL) != (cfg.psk_identity == NULL)) {
        fprintf(stderr, "mqrepld: --psk and --psk-identity go together\n");
        return 2;
    }
    return agent_run(&cfg);
}
