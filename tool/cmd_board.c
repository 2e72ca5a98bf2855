// mqboard's board commands: reset (the original tool's programs, so an original board obeys
// them too), view (follow the board's log) and status (its retained presence message).
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

int cmd_reset(struct tool *t, int argc, char **argv) {
    static const struct {
        const char *flag, *program;
    } modes[] = {
        {"--normal", "log.critical('Resetting via mqboard into normal mode')\n"
                     "sys.modules['watchdog'].reset('n')\n"},
        {"--safe", "log.critical('Resetting via mqboard into safe mode')\n"
                   "sys.modules['watchdog'].reset('f')\n"},
        {"--soft", "log.critical('Soft-reset via mqboard')\n"
                   "sys.modules['watchdog'].reset('s')\n"},
        {"--hard", "machine.reset()"},
    };
    int mode = 0;
    if (argc > 2) {
        fprintf(stderr, "usage: mqboard reset [--normal|--safe|--soft|--hard]\n");
        return EXIT_USAGE;
    }
    if (argc == 2) {
        mode = -1;
        for (int i = 0; i < 4; i++) {
            if (strcmp(argv[1], modes[i].flag) == 0) {
                mode = i;
            }
        }
        if (mode < 0) {
            fprintf(stderr, "usage: mqboard reset [--normal|--safe|--soft|--hard]\n");
            return EXIT_USAGE;
        }
    }
    const char *p = modes[mode].program;
    int code = run_eval(t, p, strlen(p), t->out);
    // A board running the original code resets at once on --hard, without an answer.
    if (code == EXIT_TIMEOUT && mode == 3) {
        code = EXIT_OK;
    }
    return code;
}

static const char *color_of(char letter) {
    switch (letter) {
    case 'C': return "\033[1;31m";
    case 'E': return "\033[31m";
    case 'W': return "\033[33m";
    case 'I': return "\033[32m";
    case 'D': return "\033[2m";
    default: return "";
    }
}

int cmd_view(struct tool *t, int argc, char **argv) {
    long count = -1;
    if (argc == 3 && strcmp(argv[1], "-n") == 0) {
        count = strtol(argv[2], NULL, 10);
    } else if (argc != 1) {
        fprintf(stderr, "usage: mqboard view [-n COUNT]\n");
        return EXIT_USAGE;
    }
    struct session *s = &t->session;
    char topic[MQB_PREFIX_MAX + 8];
    snprintf(topic, sizeof(topic), "%s/log", t->opts.prefix);
    int code = session_connect(t);
    if (code == EXIT_OK) {
        code = session_subscribe(s, topic);
    }
    bool color = isatty(fileno(t->out)) && !t->opts.json;
    cJSON *lines = cJSON_CreateArray();
    while (code == EXIT_OK && count != 0) {
        struct reply r;
        code = session_recv_raw(s, topic, -1, &r);
        if (code != EXIT_OK) {
            break;
        }
        time_t now = time(NULL);
        char stamp[16];
        strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime(&now));
        char letter = r.len > 0 ? (char)r.data[0] : ' ';
        fprintf(t->out, "%s%s %.*s%s\n", color ? color_of(letter) : "", stamp, (int)r.len,
                (const char *)r.data, color ? "\033[0m" : "");
        fflush(t->out);
        char *line = strndup((const char *)r.data, r.len);
        cJSON_AddItemToArray(lines, cJSON_CreateString(line));
        free(line);
        count -= count > 0;
    }
    t->result = lines;
    return code == RECV_INTERRUPT ? EXIT_OK : code;
}

int cmd_status(struct tool *t, int argc, char **argv) {
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: mqboard status\n");
        return EXIT_USAGE;
    }
    struct session *s = &t->session;
    char topic[MQB_PREFIX_MAX + 16];
    snprintf(topic, sizeof(topic), "%s/mqb/status", t->opts.prefix);
    int code = session_connect(t);
    if (code == EXIT_OK) {
        code = session_subscribe(s, topic);
    }
    struct reply r;
    if (code == EXIT_OK) {
        // A retained status arrives right after the subscription, or there is none.
        code = session_recv_raw(s, topic, t->opts.timeout < 2 ? t->opts.timeout : 2, &r);
        if (code == EXIT_TIMEOUT) {
            tool_error(t,
                       "board '%s' has never published a status (an original board "
                       "does not)",
                       t->opts.prefix);
            return EXIT_BOARD;
        }
    }
    if (code != EXIT_OK) {
        return code;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)r.data, r.len);
    if (!t->opts.json) {
        const cJSON *st = cJSON_GetObjectItem(j, "status"), *ag = cJSON_GetObjectItem(j, "agent"),
                    *mo = cJSON_GetObjectItem(j, "mode"),
                    *rc = cJSON_GetObjectItem(j, "reset_cause"),
                    *bt = cJSON_GetObjectItem(j, "boot_time");
        time_t boot = cJSON_IsNumber(bt) ? (time_t)bt->valuedouble : 0;
        char when[32] = "?";
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&boot));
        fprintf(t->out, "%s  %s  %s mode  booted %s  reset cause: %s\n",
                cJSON_IsString(st) ? st->valuestring : "?",
                cJSON_IsString(ag) ? ag->valuestring : "?",
                cJSON_IsString(mo) ? mo->valuestring : "?", when,
                cJSON_IsString(rc) ? rc->valuestring : "?");
    }
    t->result = j;
    return EXIT_OK;
}
