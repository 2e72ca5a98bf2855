// mqboard boards: every board that has published a status on the broker (retained), at any
// prefix depth, with its presence, agent, mode, slot and reset cause; filtered by an MQTT
// pattern or a shell glob. --probe also asks the prefixes of the config file's profiles
// that have no status (boards running the original code) with a cheap eval.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"

// After the discovery question, answers are waited for three times as long as the question
// took to come back to us through the broker (a loaded cluster: long; one mosquitto: next
// to nothing), at least QUIET_S, then until none came for a third of that; SETTLE_S at most.
// When the question does not come back (an ACL), NO_ECHO_S.
#define QUIET_S 0.3
#define NO_ECHO_S 1.0
#define SETTLE_S 5.0

// Prefixes of up to this many levels are found (one subscription each).
#define DEPTH_MAX 8
// Boards listed at most.
#define BOARDS_MAX 100000

// True when prefix matches an MQTT filter (+ one level, # the rest).
static bool mqtt_match(const char *filter, const char *prefix) {
    while (*filter != '\0') {
        if (filter[0] == '#') {
            return true;
        }
        if (filter[0] == '+') {
            prefix += strcspn(prefix, "/");
            filter++;
        } else if (*filter++ != *prefix++) {
            return false;
        }
    }
    return *prefix == '\0';
}

static bool matches(const char *pattern, const char *prefix) {
    if (pattern == NULL) {
        return true;
    }
    if (strpbrk(pattern, "+#") != NULL) {
        return mqtt_match(pattern, prefix);
    }
    return fnmatch(pattern, prefix, 0) == 0;
}

static void print_board(FILE *out, const char *prefix, const cJSON *st) {
    const char *f[5] = {"status", "agent", "mode", "reset_cause", NULL};
    char *v[4];
    for (int i = 0; i < 4; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(st, f[i]);
        v[i] = tool_escape(cJSON_IsString(x) ? x->valuestring : "-");
    }
    const cJSON *bt = cJSON_GetObjectItemCaseSensitive(st, "boot_time");
    const cJSON *slot = cJSON_GetObjectItemCaseSensitive(st, "slot");
    char when[32] = "-", sl[16] = "-";
    time_t boot = cJSON_IsNumber(bt) && bt->valuedouble > 0 && bt->valuedouble < 1e11
                      ? (time_t)bt->valuedouble
                      : 0;
    struct tm tm;
    if (boot > 0 && localtime_r(&boot, &tm) != NULL) {
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    }
    if (cJSON_IsNumber(slot) && slot->valuedouble >= 0 && slot->valuedouble < 100) {
        snprintf(sl, sizeof(sl), "%d", (int)slot->valuedouble);
    }
    char *p = tool_escape(prefix);
    fprintf(out, "%-28s %-8s %-19s %-16s %-6s %-4s %s\n", p, v[0], when, v[1], v[2], sl, v[3]);
    free(p);
    for (int i = 0; i < 4; i++) {
        free(v[i]);
    }
}

// Asks the prefixes of the config file's profiles that published no status with an eval.
static void probe(struct tool *t, cJSON *found, const char *pattern) {
    for (int i = 0; i < t->opts.nprofiles; i++) {
        const char *prefix = t->opts.profile_prefix[i];
        if (cJSON_GetObjectItemCaseSensitive(found, prefix) != NULL || !matches(pattern, prefix)) {
            continue;
        }
        struct tool one = {.opts = t->opts, .err = fopen("/dev/null", "w")};
        FILE *null = fopen("/dev/null", "w");
        one.out = null;
        one.opts.prefix = prefix;
        one.opts.timeout = t->opts.timeout < 2 ? t->opts.timeout : 2;
        int code = run_eval(&one, "1", 1, null);
        session_close(&one.session);
        fclose(null);
        fclose(one.err);
        cJSON *st = cJSON_CreateObject();
        cJSON_AddStringToObject(st, "status", code == EXIT_OK ? "answers" : "silent");
        cJSON_AddStringToObject(st, "agent", code == EXIT_OK ? "(no status: original?)" : "-");
        cJSON_AddItemToObject(found, prefix, st);
    }
}

// The statuses seen, in arrival order; sorted once at the end (a board's later status
// replaces its earlier one), so that 100,000 boards cost n log n, not n squared.
struct seen {
    char *prefix;
    cJSON *status;
    size_t order;
};

struct seen_list {
    struct seen *v;
    size_t n, cap;
};

// Takes the queued statuses (pattern-matched, at most BOARDS_MAX); sets *echo when our
// discovery question (nonce) came back. Returns how many messages it took.
static int take_statuses(struct session *s, struct seen_list *l, const char *pattern,
                         const char *nonce, bool *echo) {
    struct reply r;
    const char *topic_seen;
    int taken = 0;
    while (l->n < BOARDS_MAX && session_take_any(s, &topic_seen, &r)) {
        taken++;
        if (nonce != NULL && strcmp(topic_seen, MQB_DISCOVER_TOPIC) == 0) {
            *echo |= r.len == strlen(nonce) && memcmp(r.data, nonce, r.len) == 0;
            continue;
        }
        size_t tl = strlen(topic_seen), sl = strlen("/mqb/status");
        if (tl <= sl || strcmp(topic_seen + tl - sl, "/mqb/status") != 0 || r.len == 0) {
            continue;
        }
        char *prefix = strndup(topic_seen, tl - sl);
        cJSON *st = cJSON_ParseWithLength((const char *)r.data, r.len);
        if (cJSON_IsObject(st) && matches(pattern, prefix)) {
            if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 256;
                l->v = realloc(l->v, l->cap * sizeof(*l->v));
            }
            l->v[l->n] = (struct seen){prefix, st, l->n};
            l->n++;
        } else {
            cJSON_Delete(st);
            free(prefix);
        }
    }
    return taken;
}

static int by_prefix(const void *a, const void *b) {
    const struct seen *x = a, *y = b;
    int c = strcmp(x->prefix, y->prefix);
    return c != 0 ? c : x->order < y->order ? -1 : 1;
}

// The boards by prefix, each with its latest status (the list is emptied).
static cJSON *sorted_boards(struct seen_list *l) {
    cJSON *found = cJSON_CreateObject();
    qsort(l->v, l->n, sizeof(*l->v), by_prefix);
    for (size_t i = 0; i < l->n; i++) {
        if (i + 1 < l->n && strcmp(l->v[i].prefix, l->v[i + 1].prefix) == 0) {
            cJSON_Delete(l->v[i].status); // an older status of the same board
        } else {
            cJSON_AddItemToObject(found, l->v[i].prefix, l->v[i].status);
        }
        free(l->v[i].prefix);
    }
    free(l->v);
    *l = (struct seen_list){0};
    return found;
}

void *boards_find(struct tool *t, const char *pattern, bool do_probe, int *codep) {
    struct session *s = &t->session;
    if (pattern != NULL && strpbrk(pattern, "+#") != NULL &&
        mosquitto_sub_topic_check(pattern) != MOSQ_ERR_SUCCESS) {
        tool_error(t,
                   "'%s' is not an MQTT pattern: '+' and '#' stand for whole levels ('#' "
                   "only at the end); shell wildcards (* ? []) work too",
                   pattern);
        *codep = EXIT_USAGE;
        return NULL;
    }
    int code = session_connect(t);
    char topic[DEPTH_MAX * 2 + 16];
    for (int depth = 1; code == EXIT_OK && depth <= DEPTH_MAX; depth++) {
        topic[0] = '\0';
        for (int k = 0; k < depth; k++) {
            strcat(topic, "+/");
        }
        strcat(topic, "mqb/status");
        // At QoS 0: its retained messages arrive before the SUBACK of the next one, and a
        // broker's queue limit for acknowledged delivery cannot drop any of them.
        code = session_subscribe_qos(s, topic, 0);
    }
    if (code == EXIT_OK) {
        code = session_subscribe(s, "mqboard/-/fence"); // fences the last one's retained
    }
    char nonce[20];
    if (code == EXIT_OK) {
        // Every running board answers with its status at once, whenever a clustered broker
        // gets round to delivering the retained ones (docs/protocol.md). We hear the question
        // too: how long it took tells how long the answers may take.
        session_new_id(s, nonce, sizeof(nonce));
        code = session_subscribe_qos(s, MQB_DISCOVER_TOPIC, 0);
        mosquitto_publish(s->mosq, NULL, MQB_DISCOVER_TOPIC, (int)strlen(nonce), nonce, 0, false);
    }
    *codep = code;
    if (code != EXIT_OK) {
        return NULL;
    }
    // The fence's SUBACK comes after every retained status on mosquitto; a clustered broker
    // may deliver them later: wait until none has come for QUIET_S (at most SETTLE_S).
    struct seen_list seen = {0};
    bool echo = false;
    double asked = tool_now(), last = asked, deadline = asked + NO_ECHO_S;
    for (;;) {
        bool had_echo = echo;
        if (take_statuses(s, &seen, pattern, nonce, &echo) > 0) {
            last = tool_now();
        }
        if (echo && !had_echo) {
            double rtt = tool_now() - asked;
            deadline = asked + (3 * rtt > QUIET_S ? 3 * rtt : QUIET_S);
        }
        double now = tool_now(), quiet = (deadline - asked) / 3;
        if ((now >= deadline && now - last >= quiet) || now - asked >= SETTLE_S ||
            seen.n >= BOARDS_MAX || session_pump(s, quiet) != EXIT_OK) {
            break;
        }
    }
    take_statuses(s, &seen, pattern, NULL, &echo);
    cJSON *found = sorted_boards(&seen);
    if (do_probe) {
        probe(t, found, pattern);
    }
    return found;
}

int cmd_boards(struct tool *t, int argc, char **argv) {
    const char *pattern = NULL;
    bool do_probe = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--probe") == 0) {
            do_probe = true;
        } else if (pattern == NULL && argv[i][0] != '-') {
            pattern = argv[i];
        } else {
            fprintf(stderr, "usage: mqboard boards [--probe] [PATTERN]\n");
            return EXIT_USAGE;
        }
    }
    int code;
    cJSON *found = boards_find(t, pattern, do_probe, &code);
    if (found == NULL) {
        return code;
    }
    if (!t->opts.json) {
        fprintf(t->out, "%-28s %-8s %-19s %-16s %-6s %-4s %s\n", "PREFIX", "STATUS", "BOOTED",
                "AGENT", "MODE", "SLOT", "RESET CAUSE");
        const cJSON *b;
        cJSON_ArrayForEach(b, found) {
            print_board(t->out, b->string, b);
        }
    }
    t->result = found;
    return EXIT_OK;
}
