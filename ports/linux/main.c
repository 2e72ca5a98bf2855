// mqrepld: the device agent's entry point. Settings come from defaults, then the config file
// (--config, `key = value` lines named as the long options), then MQREPLD_* variables, then
// the command line; all through one table.
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

char mqrepld_version_tag[] = "MQREPLD-VERSION=" MQREPLD_VERSION;
static char name[64];

const char *agent_version(void) {
    return mqrepld_version_tag + strlen("MQREPLD-VERSION=");
}

const char *agent_name(void) {
    if (name[0] == '\0') {
        snprintf(name, sizeof(name), "mqrepld %s", agent_version());
    }
    return name;
}

enum kind { STR, INT, NUM, BOOL };

struct setting {
    const char *name;
    enum kind kind;
    size_t off;
    double lo, hi;
    int short_opt;
    const char *help;
};

#define F(field) offsetof(struct agent_config, field)

static const struct setting settings[] = {
    {"server", STR, F(server), 0, 0, 's', "broker host (default 127.0.0.1)"},
    {"port", INT, F(port), 1, 65535, 'p', "broker port (default 1883)"},
    {"prefix", STR, F(prefix), 0, 0, 0, "the board's topic prefix (required)"},
    {"root", STR, F(root), 0, 0, 0, "the board's filesystem (default .)"},
    {"client-id", STR, F(client_id), 0, 0, 0, "MQTT client id"},
    {"username", STR, F(username), 0, 0, 'u', "broker user name"},
    {"password", STR, F(password), 0, 0, 'P',
     "broker password (visible in ps: prefer --password-file or MQREPLD_PASSWORD)"},
    {"cafile", STR, F(cafile), 0, 0, 0, "TLS with this CA certificate"},
    {"psk-identity", STR, F(psk_identity), 0, 0, 0, "TLS-PSK identity"},
    {"password-file", STR, F(password_file), 0, 0, 0,
     "read the broker password from this file (keeps it out of ps)"},
    {"psk", STR, F(psk), 0, 0, 0, "TLS-PSK key (hex; visible in ps: prefer --psk-file)"},
    {"psk-file", STR, F(psk_file), 0, 0, 0, "read the TLS-PSK key from this file"},
    {"keepalive", INT, F(keepalive), 5, 65535, 0, "MQTT keepalive seconds (default 30)"},
    {"rtc-file", STR, F(rtc_file), 0, 0, 0, "emulated RTC memory (default under /run)"},
    {"plain-repl", BOOL, F(plain_repl), 0, 0, 0, "serve PREFIX/repl/in (default on)"},
    {"log-rate", NUM, F(log_rate), 0.1, 1e6, 0, "log lines/s to PREFIX/log (default 20)"},
    {"wdt-timeout", NUM, F(wdt_timeout), 0, 86400, 0, "watchdog seconds, 0 off (default 300)"},
    {"allok", NUM, F(allok), 0, 864000, 0, "seconds of feeding to earn normal mode (300)"},
    {"slots", STR, F(slots), 0, 0, 0, "A/B firmware slot directory (run as launcher)"},
    {"hw-watchdog", STR, F(hw_watchdog), 0, 0, 0, "Linux watchdog device to pet while fed"},
    {"syslog", BOOL, F(syslog), 0, 0, 0, "also log to syslog"},
    {"keys", STR, F(keys), 0, 0, 0,
     "directory of the board's key and the keys it obeys (authorized_keys; docs/security.md)"},
    {"original", BOOL, F(original), 0, 0, 0,
     "answer exactly as a board running the original mqrepl.py (tests)"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static void usage(FILE *f) {
    fprintf(f, "usage: mqrepld [options]\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        char opt[64], arg[32] = "";
        if (s->kind != BOOL) { // the value's name: the name's last word ("--rtc-file FILE")
            const char *w = strrchr(s->name, '-') != NULL ? strrchr(s->name, '-') + 1 : s->name;
            size_t k = 0;
            for (; w[k] != '\0' && k + 2 < sizeof(arg); k++) {
                arg[k + 1] = (char)toupper((unsigned char)w[k]);
            }
            arg[0] = ' ';
            arg[k + 1] = '\0';
        }
        if (s->short_opt) {
            snprintf(opt, sizeof(opt), "-%c, --%s%s", s->short_opt, s->name, arg);
        } else {
            snprintf(opt, sizeof(opt), "    --%s%s", s->name, arg);
        }
        fprintf(f, "  %-28s %s%s\n", opt, s->help, s->kind == BOOL ? " (--no-NAME: off)" : "");
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n  %-28s %s\n  %-28s %s\n", "    --config FILE",
            "settings file: 'name = value' lines", "-v, --verbose", "log each command",
            "-V, --version", "print the version", "-h, --help", "this help");
    fprintf(f, "Every setting is also read from MQREPLD_NAME (e.g. MQREPLD_PREFIX).\n");
}

static bool apply(struct agent_config *cfg, const struct setting *s, const char *value,
                  const char *from) {
    char *p = (char *)cfg + s->off;
    char *end;
    double v = 0;
    if (s->kind == STR) {
        *(const char **)p = strdup(value);
        return true;
    }
    if (s->kind == BOOL) {
        bool on = strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0 ||
                  strcasecmp(value, "yes") == 0 || strcasecmp(value, "on") == 0;
        bool off = strcmp(value, "0") == 0 || strcasecmp(value, "false") == 0 ||
                   strcasecmp(value, "no") == 0 || strcasecmp(value, "off") == 0;
        if (!on && !off) {
            fprintf(stderr, "mqrepld: %s: %s wants true or false, not '%s'\n", from, s->name,
                    value);
            return false;
        }
        *(bool *)p = on;
        return true;
    }
    v = strtod(value, &end);
    if (*value == '\0' || *end != '\0' || v < s->lo || v > s->hi) {
        fprintf(stderr, "mqrepld: %s: invalid %s '%s' (expected %g..%g)\n", from, s->name, value,
                s->lo, s->hi);
        return false;
    }
    if (s->kind == INT) {
        *(int *)p = (int)v;
    } else {
        *(double *)p = v;
    }
    return true;
}

static const struct setting *find(const char *name) {
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (strcmp(settings[i].name, name) == 0) {
            return &settings[i];
        }
    }
    return NULL;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) {
        *--e = '\0';
    }
    return s;
}

static bool load_config(struct agent_config *cfg, const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "mqrepld: cannot read config file %s: %m\n", path);
        return false;
    }
    char line[1024];
    int n = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        n++;
        char *s = trim(line);
        if (*s == '#' || *s == '\0') {
            continue;
        }
        char *eq = strchr(s, '=');
        char where[512];
        snprintf(where, sizeof(where), "%s:%d", path, n);
        if (eq == NULL) {
            fprintf(stderr, "mqrepld: %s: expected 'name = value'\n", where);
            ok = false;
            break;
        }
        *eq = '\0';
        const struct setting *st = find(trim(s));
        if (st == NULL) {
            fprintf(stderr, "mqrepld: %s: unknown setting '%s'\n", where, trim(s));
            ok = false;
        } else {
            ok = apply(cfg, st, trim(eq + 1), where);
        }
    }
    fclose(f);
    return ok;
}

static bool load_env(struct agent_config *cfg) {
    for (size_t i = 0; i < NSETTINGS; i++) {
        char name[64] = "MQREPLD_";
        for (const char *c = settings[i].name; *c; c++) {
            char u = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
            strncat(name, &u, 1);
        }
        const char *v = getenv(name);
        if (v != NULL && v[0] != '\0' && !apply(cfg, &settings[i], v, name)) {
            return false;
        }
    }
    return true;
}

// Long options: every setting, --no-NAME for booleans, and the fixed ones.
static struct option *long_options(void) {
    static struct option opts[2 * NSETTINGS + 5];
    size_t n = 0;
    for (size_t i = 0; i < NSETTINGS; i++) {
        opts[n++] = (struct option){settings[i].name,
                                    settings[i].kind == BOOL ? no_argument : required_argument,
                                    NULL, (int)(1000 + i)};
        if (settings[i].kind == BOOL) {
            static char names[NSETTINGS][40];
            snprintf(names[i], sizeof(names[i]), "no-%s", settings[i].name);
            opts[n++] = (struct option){names[i], no_argument, NULL, (int)(2000 + i)};
        }
    }
    opts[n++] = (struct option){"config", required_argument, NULL, 'c'};
    opts[n++] = (struct option){"verbose", no_argument, NULL, 'v'};
    opts[n++] = (struct option){"version", no_argument, NULL, 'V'};
    opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    opts[n] = (struct option){NULL, 0, NULL, 0};
    return opts;
}

static int parse_args(struct agent_config *cfg, int argc, char **argv) {
    struct option *opts = long_options();
    const char *shorts = "s:p:u:P:c:vVh";
    // The config file comes first, whatever its place on the command line.
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        if (c == 'c' && !load_config(cfg, optarg)) {
            return 2;
        }
    }
    if (!load_env(cfg)) {
        return 2;
    }
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        const struct setting *s = NULL;
        for (size_t i = 0; i < NSETTINGS; i++) {
            if (c == settings[i].short_opt || c == (int)(1000 + i)) {
                s = &settings[i];
            }
        }
        if (s != NULL) {
            if (!apply(cfg, s, s->kind == BOOL ? "true" : optarg, "option")) {
                return 2;
            }
        } else if (c >= 2000 && c < 2000 + (int)NSETTINGS) {
            apply(cfg, &settings[c - 2000], "false", "option");
        } else if (c == 'v') {
            cfg->verbose++;
        } else if (c == 'V') {
            printf("%s\n", agent_name());
            exit(0);
        } else if (c == 'h') {
            usage(stdout);
            exit(0);
        } else if (c != 'c') {
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "mqrepld: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

// The default RTC memory file: in a directory that survives an agent restart but not a
// reboot (a tmpfs such as /run), one file per board prefix.
static const char *default_rtc_file(const char *prefix) {
    const char *dir = getenv("XDG_RUNTIME_DIR");
    static char path[4096];
    char name[256];
    snprintf(name, sizeof(name), "%s", prefix);
    for (char *p = name; *p; p++) {
        *p = *p == '/' ? '_' : *p;
    }
    snprintf(path, sizeof(path), "%s/mqrepld-%s.rtc",
             dir != NULL ? dir : (access("/run", W_OK) == 0 ? "/run" : "/tmp"), name);
    return path;
}

// A secret from the first line of a file (so that it is not on the command line).
static bool read_secret(const char *path, const char **out) {
    static char kept[2][1024];
    static int n;
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    if (path == NULL) {
        return true;
    }
    struct stat st;
    if (f != NULL && fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0) {
        fprintf(stderr, "mqrepld: '%s' may be read by other users (mode %04o): chmod 600 it\n",
                path, (unsigned)(st.st_mode & 07777));
        fclose(f);
        return false;
    }
    char *line = n < 2 ? kept[n++] : NULL;
    bool ok = f != NULL && line != NULL && fgets(line, sizeof(kept[0]), f) != NULL;
    if (f != NULL) {
        fclose(f);
    }
    if (!ok) {
        fprintf(stderr, "mqrepld: cannot read the secret in '%s'\n", path);
        return false;
    }
    line[strcspn(line, "\r\n")] = '\0';
    *out = line;
    return true;
}

// A path setting made absolute against the directory mqrepld started in: the agent later
// changes into its root, where a relative --rtc-file or --slots would name another file.
// Settings are heap strings (parse_args); the old one is replaced. False (said) when the
// working directory cannot be known.
static bool make_absolute(const char *name, const char **path) {
    char cwd[4096], *abs = NULL;
    if (*path == NULL || (*path)[0] == '/') {
        return true;
    }
    if (getcwd(cwd, sizeof(cwd)) == NULL || asprintf(&abs, "%s/%s", cwd, *path) < 0) {
        fprintf(stderr, "mqrepld: --%s '%s': cannot make the path absolute\n", name, *path);
        return false;
    }
    free((void *)*path);
    *path = abs;
    return true;
}

// The RTC memory is written at every stop: a directory that cannot take it is an error now,
// not a board that silently restarts in safe mode.
static bool dir_writable(const char *name, const char *path) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        slash[slash == dir ? 1 : 0] = '\0';
    }
    if (access(slash != NULL ? dir : ".", W_OK) != 0) {
        fprintf(stderr, "mqrepld: --%s '%s': cannot write in its directory '%s': %s\n", name, path,
                slash != NULL ? dir : ".", strerror(errno));
        return false;
    }
    return true;
}

int main(int argc, char **argv) {
    // Messages of up to 64 KiB come and go by the thousand (libmosquitto allocates each):
    // glibc would give the heap's top back to the kernel and take it again for most of them.
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    // Static: the settings (and the strings they own) live as long as the process.
    static struct agent_config cfg = {
        .server = "127.0.0.1",
        .port = 1883,
        .keepalive = 30,
        .plain_repl = true,
        .log_rate = 20,
        .wdt_timeout = 300,
        .allok = 300,
    };
    int rc = parse_args(&cfg, argc, argv);
    if (rc != 0) {
        return rc;
    }
    if (cfg.root == NULL) {
        cfg.root = strdup("."); // the default: where it starts
    }
    if (!make_absolute("root", &cfg.root) || !make_absolute("rtc-file", &cfg.rtc_file) ||
        !make_absolute("slots", &cfg.slots) || !make_absolute("cafile", &cfg.cafile) ||
        !make_absolute("hw-watchdog", &cfg.hw_watchdog) || !make_absolute("keys", &cfg.keys)) {
        return 2;
    }
    if (cfg.prefix == NULL || cfg.prefix[0] == '\0') {
        fprintf(stderr, "mqrepld: --prefix is required (the board's topic prefix, "
                        "e.g. --prefix esp32/kitchen)\n");
        return 2;
    }
    if (!read_secret(cfg.password_file, &cfg.password) || !read_secret(cfg.psk_file, &cfg.psk)) {
        return 2;
    }
    if ((cfg.psk == NULL) != (cfg.psk_identity == NULL)) {
        fprintf(stderr, "mqrepld: --psk and --psk-identity go together\n");
        return 2;
    }
    if (cfg.rtc_file == NULL) {
        cfg.rtc_file = default_rtc_file(cfg.prefix);
    }
    if (!dir_writable("rtc-file", cfg.rtc_file)) {
        return 2;
    }
    // With --slots this process is the launcher ("bootloader"): it runs the agent from the
    // slot the boot-state record chooses, and restarts it on every reset.
    if (cfg.slots != NULL && getenv("MQREPLD_SLOT") == NULL) {
        return launcher_run(&cfg, argv);
    }
    return agent_run(&cfg, argv);
}
