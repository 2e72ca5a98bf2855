// mqboard's settings below its options: the config file (top-level settings, [board]
// profiles, groups, aliases), then MQBOARD_* variables; secrets read from files that only
// their owner may read. Every setting is applied by name (settings_set), the same for all.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <wordexp.h>

#include "tool.h"

bool settings_number(const char *what, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "mqboard: invalid %s '%s'\n", what, s);
        return false;
    }
    *out = v;
    return true;
}

// A copy of a setting's value that stays reachable for the life of the process (values from
// the config file; a later setting may replace the pointer, the copy is not lost).
const char *settings_keep(const char *value) {
    static char *kept[256];
    static size_t n;
    char *copy = strdup(value);
    if (n < sizeof(kept) / sizeof(kept[0])) {
        kept[n++] = copy;
    }
    return copy;
}

// A secret from the first line of a file, so that it is not on the command line (ps). A file
// that other users may read is refused, as ssh refuses such a key.
static bool read_secret(const char *key, const char *path, const char **out) {
    char line[1024];
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0) {
        fprintf(stderr, "mqboard: %s: '%s' may be read by other users (mode %04o): chmod 600 it\n",
                key, path, (unsigned)(st.st_mode & 07777));
        return false;
    }
    FILE *f = fopen(path, "r");
    bool ok = f != NULL && fgets(line, sizeof(line), f) != NULL;
    if (f != NULL) {
        fclose(f);
    }
    if (!ok) {
        fprintf(stderr, "mqboard: %s: cannot read '%s'\n", key, path);
        return false;
    }
    line[strcspn(line, "\r\n")] = '\0';
    *out = settings_keep(line);
    return true;
}

// Applies one setting by name (config file keys and variables share the names).
bool settings_set(struct tool_opts *o, const char *key, const char *value, const char *from) {
    double v;
    char what[256];
    snprintf(what, sizeof(what), "%s (%s)", key, from);
    if (strncmp(key, "alias.", 6) == 0 && key[6] != '\0') {
        if (o->naliases >= ALIASES_MAX) {
            fprintf(stderr, "mqboard: %s: at most %d aliases\n", from, ALIASES_MAX);
            return false;
        }
        o->alias_name[o->naliases] = settings_keep(key + 6);
        o->alias_value[o->naliases++] = settings_keep(value);
    } else if (strcmp(key, "server") == 0) {
        o->server = settings_keep(value);
    } else if (strcmp(key, "port") == 0) {
        if (!settings_number(what, value, 1, 65535, &v)) {
            return false;
        }
        o->port = (int)v;
    } else if (strcmp(key, "prefix") == 0 || strcmp(key, "topic") == 0) {
        if (o->prefix != NULL && strcmp(o->prefix, value) != 0) {
            snprintf(o->prefix_overrides, sizeof(o->prefix_overrides), "'%s' from %s", o->prefix,
                     o->prefix_from);
        }
        o->prefix = settings_keep(value);
        o->prefix_from = settings_keep(from);
    } else if (strcmp(key, "timeout") == 0) {
        return settings_number(what, value, 0.1, 86400, &o->timeout);
    } else if (strcmp(key, "username") == 0 || strcmp(key, "user") == 0) {
        o->username = settings_keep(value);
    } else if (strcmp(key, "password") == 0) {
        o->password = settings_keep(value);
    } else if (strcmp(key, "password-file") == 0 || strcmp(key, "psk-file") == 0) {
        return read_secret(key, value, strcmp(key, "psk-file") == 0 ? &o->psk : &o->password);
    } else if (strcmp(key, "tls") == 0) {
        o->tls = strcmp(value, "0") != 0 && strcmp(value, "false") != 0 && value[0] != '\0';
    } else if (strcmp(key, "cafile") == 0) {
        o->cafile = settings_keep(value);
    } else if (strcmp(key, "psk-identity") == 0 || strcmp(key, "psk_identity") == 0) {
        o->psk_identity = settings_keep(value);
    } else if (strcmp(key, "psk") == 0) {
        o->psk = settings_keep(value);
    } else if (strcmp(key, "key") == 0) {
        o->key = settings_keep(value);
    } else {
        fprintf(stderr, "mqboard: %s: unknown setting '%s'\n", from, key);
        return false;
    }
    return true;
}

// The config file. With top, its top-level settings (and the list of profiles and the group's
// members); with section, the [board] profile's settings. A profile named on the command line
// (-b) is applied after the variables, one named by MQBOARD_BOARD before them.
bool settings_load_config(struct tool_opts *o, const char *board, bool top, bool section_too) {
    char path[4096];
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg != NULL && xdg[0] != '\0') {
        snprintf(path, sizeof(path), "%s/mqboard/config", xdg);
    } else {
        snprintf(path, sizeof(path), "%s/.config/mqboard/config", home ? home : ".");
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (board != NULL) {
            fprintf(stderr, "mqboard: no config file %s for board '%s'\n", path, board);
            return false;
        }
        return true;
    }
    char line[1024], from[4400];
    const char *section = NULL;
    bool found = board == NULL, ok = true;
    for (int n = 1; ok && fgets(line, sizeof(line), f) != NULL; n++) {
        char *key = NULL, *value = NULL;
        if (section != NULL) {
            snprintf(from, sizeof(from), "profile [%.100s], %s:%d", section, path, n);
        } else {
            snprintf(from, sizeof(from), "%s:%d", path, n);
        }
        switch (parse_conf_line(line, &key, &value)) {
        case CONF_NONE: break;
        case CONF_SECTION:
            free((void *)section);
            section = strdup(key);
            found |= board != NULL &&
                     (strcmp(section, board) == 0 ||
                      (strncmp(section, "group ", 6) == 0 && strcmp(section + 6, board) == 0));
            break;
        case CONF_SETTING:
            if (((section == NULL && top) || (section_too && section != NULL && board != NULL &&
                                              strcmp(section, board) == 0)) &&
                strcmp(key, "members") != 0) {
                ok = settings_set(o, key, value, from);
            }
            if (!top) {
                break;
            }
            if (section != NULL && strcmp(key, "prefix") == 0 && o->nprofiles < PROFILES_MAX &&
                strncmp(section, "group ", 6) != 0) {
                o->profile_name[o->nprofiles] = settings_keep(section);
                o->profile_prefix[o->nprofiles++] = settings_keep(value); // boards --probe, groups
            }
            if (section != NULL && board != NULL && strncmp(section, "group ", 6) == 0 &&
                strcmp(section + 6, board) == 0 && strcmp(key, "members") == 0) {
                o->group_members = settings_keep(value);
            }
            break;
        case CONF_BAD:
            fprintf(stderr, "mqboard: %s: expected 'key = value' or '[NAME]'\n", from);
            ok = false;
            break;
        }
    }
    free((void *)section);
    fclose(f);
    if (ok && !found) {
        fprintf(stderr, "mqboard: no [%s] profile in %s\n", board, path);
        return false;
    }
    return ok;
}

bool settings_load_env(struct tool_opts *o) {
    static const char *const vars[][2] = {
        {"MQBOARD_SERVER", "server"},
        {"MQBOARD_PORT", "port"},
        {"MQBOARD_TOPIC", "prefix"},
        {"MQBOARD_PREFIX", "prefix"},
        {"MQBOARD_TIMEOUT", "timeout"},
        {"MQBOARD_USER", "username"},
        {"MQBOARD_USERNAME", "username"},
        {"MQBOARD_PASSWORD", "password"},
        {"MQBOARD_TLS", "tls"},
        {"MQBOARD_CAFILE", "cafile"},
        {"MQBOARD_PSK_IDENTITY", "psk-identity"},
        {"MQBOARD_PSK", "psk"},
        {"MQBOARD_PASSWORD_FILE", "password-file"},
        {"MQBOARD_PSK_FILE", "psk-file"},
        {"MQBOARD_KEY", "key"},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *v = getenv(vars[i][0]);
        if (v != NULL && v[0] != '\0' && !settings_set(o, vars[i][1], v, vars[i][0])) {
            return false;
        }
    }
    return true;
}

// A mistyped option: one line (getopt said which) and the nearest option, not the whole help.
