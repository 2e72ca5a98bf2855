// mqboard's board commands: reset (the original tool's programs, so an original board obeys
// them too), view (follow the board's log) and status (its retained presence message).
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

// How long `reset` waits for the board to come back (its status with a new boot id).
#define RESET_WAIT_S 30.0

static const struct {
    const char *flag;
    char mode;
    const char *program; // the original tool's program, for a board without the native reset
} reset_modes[] = {
    {"--normal", 'n',
     "log.critical('Resetting via mqboard into normal mode')\n"
     "sys.modules['watchdog'].reset('n')\n"},
    {"--safe", 'f',
     "log.critical('Resetting via mqboard into safe mode')\n"
     "sys.modules['watchdog'].reset('f')\n"},
    {"--soft", 's',
     "log.critical('Soft-reset via mqboard')\n"
     "sys.modules['watchdog'].reset('s')\n"},
    {"--hard", 'h', "machine.reset()"},
};

// The native reset (handled by our agent's control path, whatever runs in the interpreter).
// Returns EXIT_OK, EXIT_BOARD with *unsupported set for a board without it, or an error.
static int native_reset(struct tool *t, char mode, bool *unsupported) {
    struct session *s = &t->session;
    int code = session_begin(s, "reset");
    if (code == EXIT_OK) {
        code = session_send(s, NULL, 0, true, (const uint8_t *)&mode, 1);
    }
    struct reply r;
    if (code == EXIT_OK) {
        code = session_recv(s, -1, &r);
        code = code == RECV_INTERRUPT ? EXIT_INTERRUPTED : code;
    }
    if (code == EXIT_OK && r.is_err && r.len > 8 && memmem(r.data, r.len, "not supported", 13)) {
        *unsupported = true;
    } else if (code == EXIT_OK && r.is_err) {
        code = report_board_error(t, &r);
    }
    session_end(s);
    return code;
}

int cmd_reset(struct tool *t, int argc, char **argv) {
    int mode = 0;
    bool wait = true;
    for (int i = 1; i < argc; i++) {
        int m = -1;
        for (int k = 0; k < 4; k++) {
            m = strcmp(argv[i], reset_modes[k].flag) == 0 ? k : m;
        }
        if (strcmp(argv[i], "--no-wait") == 0) {
            wait = false;
        } else if (m >= 0) {
            mode = m;
        } else {
            fprintf(stderr, "usage: mqboard reset [--normal|--safe|--soft|--hard] [--no-wait]\n");
            return EXIT_USAGE;
        }
    }
    struct session *s = &t->session;
    int code = session_connect(t);
    code = code == EXIT_OK ? session_present(s) : code; // the status may come late (clusters)
    char old_boot[sizeof(s->boot_id)];
    snprintf(old_boot, sizeof(old_boot), "%s", s->boot_id);
    bool unsupported = false, native = false;
    if (code == EXIT_OK) {
        code = native_reset(t, reset_modes[mode].mode, &unsupported);
        native = code == EXIT_OK && !unsupported;
    }
    if (code == EXIT_OK && unsupported) {
        // A board running the original code: its own reset program (it answers, then resets;
        // on --hard it resets at once, without an answer).
        const char *p = reset_modes[mode].program;
        code = run_eval(t, p, strlen(p), t->out);
        code = code == EXIT_TIMEOUT && mode == 3 ? EXIT_OK : code;
    }
    if (code != EXIT_OK || !wait) {
        return code;
    }
    if (!native || old_boot[0] == '\0') {
        if (t->opts.verbose) {
            fprintf(stderr, "mqboard: the board publishes no status: not waiting for it\n");
        }
        return EXIT_OK;
    }
    code = session_wait_boot(s, old_boot, RESET_WAIT_S);
    // Back means answering, not only a status: on a clustered broker the board's
    // subscription reaches the other nodes a moment after its status does.
    code = code == EXIT_OK ? session_answers(s, RESET_WAIT_S) : code;
    if (code == EXIT_TIMEOUT) {
        tool_error(t, "the board did not come back within %.0f s of the reset", RESET_WAIT_S);
    } else if (code == RECV_INTERRUPT) {
        code = EXIT_INTERRUPTED;
    } else if (code == EXIT_OK && t->opts.verbose) {
        fprintf(stderr, "mqboard: the board is back\n");
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
        char *line = strndup((const char *)r.data, r.len);
        char *shown = tool_escape(line); // a board's log is untrusted: no terminal escapes
        fprintf(t->out, "%s%s %s%s\n", color ? color_of(letter) : "", stamp, shown,
                color ? "\033[0m" : "");
        free(shown);
        fflush(t->out);
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
    if (s->trust.refused) {
        tool_error(t, "status: board '%s' has no status signed by its key (said above)",
                   t->opts.prefix);
        return EXIT_BOARD;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)r.data, r.len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        tool_error(t, "board '%s': its status is not a JSON object", t->opts.prefix);
        return EXIT_BOARD;
    }
    if (!t->opts.json) {
        const cJSON *st = cJSON_GetObjectItem(j, "status"), *ag = cJSON_GetObjectItem(j, "agent"),
                    *mo = cJSON_GetObjectItem(j, "mode"),
                    *rc = cJSON_GetObjectItem(j, "reset_cause"),
                    *bt = cJSON_GetObjectItem(j, "boot_time");
        // Anyone may publish the status: every field is checked, and shown escaped.
        time_t boot = cJSON_IsNumber(bt) && bt->valuedouble > 0 && bt->valuedouble < 1e11
                          ? (time_t)bt->valuedouble
                          : 0;
        char when[32] = "?";
        struct tm tm;
        if (boot > 0 && localtime_r(&boot, &tm) != NULL) {
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        }
        const cJSON *im = cJSON_GetObjectItem(j, "image");
        char *f[6];
        const cJSON *src[5] = {st, ag, mo, rc, im};
        for (int i = 0; i < 5; i++) {
            f[i] = tool_escape(cJSON_IsString(src[i]) ? src[i]->valuestring : "?");
        }
        f[5] = tool_escape(t->opts.prefix);
        // The prefix first: which board answered is never in doubt.
        char trust[128];
        keys_describe(&s->trust, trust, sizeof(trust));
        // A board without a set clock (no RTC, no NTP yet) cannot refuse late commands.
        bool clock_unset = cJSON_IsFalse(cJSON_GetObjectItem(j, "clock_set"));
        fprintf(t->out, "%s: %s  %s  %s mode  booted %s  reset cause: %s%s%s%s  %s\n", f[5], f[0],
                f[1], f[2], when, f[3], cJSON_IsString(im) ? "  image: " : "",
                cJSON_IsString(im) ? f[4] : "",
                clock_unset ? "  clock not set (command deadlines unchecked)" : "", trust);
        for (int i = 0; i < 6; i++) {
            free(f[i]);
        }
    }
    t->result = j;
    return EXIT_OK;
}

// rtc: the board's clock (machine.RTC().datetime()); --set sets it to this host's time and
// reads it back.
int cmd_rtc(struct tool *t, int argc, char **argv) {
    bool set = argc == 2 && strcmp(argv[1], "--set") == 0;
    if (argc > 2 || (argc == 2 && !set)) {
        fprintf(stderr, "usage: mqboard rtc [--set]\n");
        return EXIT_USAGE;
    }
    char prog[256] = "import machine\n_r=machine.RTC()\n";
    if (set) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        // MicroPython's weekday: Monday is 0.
        snprintf(prog + strlen(prog), sizeof(prog) - strlen(prog),
                 "_r.datetime((%d,%d,%d,%d,%d,%d,%d,0))\n", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, (tm.tm_wday + 6) % 7, tm.tm_hour, tm.tm_min, tm.tm_sec);
    }
    strcat(prog, "print(list(_r.datetime()))\ndel _r\n");
    char *out = NULL;
    int code = run_capture(t, prog, &out);
    cJSON *j = code == EXIT_OK ? cJSON_Parse(out) : NULL;
    free(out);
    int v[7];
    for (int i = 0; cJSON_IsArray(j) && i < 7; i++) {
        const cJSON *x = cJSON_GetArrayItem(j, i == 3 ? 4 : i < 3 ? i : i + 1);
        v[i] = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < 1e5
                   ? (int)x->valuedouble
                   : -1;
    }
    if (code == EXIT_OK && (!cJSON_IsArray(j) || cJSON_GetArraySize(j) < 7 || v[0] < 0)) {
        tool_error(t, "rtc: the board's answer is not a datetime tuple");
        code = EXIT_BOARD;
    }
    if (code == EXIT_OK) {
        char iso[32];
        snprintf(iso, sizeof(iso), "%04d-%02d-%02dT%02d:%02d:%02d", v[0], v[1], v[2], v[3], v[4],
                 v[5]);
        iso[10] = t->opts.json ? 'T' : ' ';
        if (t->opts.json) { // the board's clock (its local time, no zone: it keeps none)
            t->result = cJSON_CreateObject();
            cJSON_AddStringToObject(t->result, "datetime", iso);
            cJSON_AddBoolToObject(t->result, "set", set);
        } else {
            fprintf(t->out, "%s\n", iso);
        }
        struct tm b = {.tm_year = v[0] - 1900,
                       .tm_mon = v[1] - 1,
                       .tm_mday = v[2],
                       .tm_hour = v[3],
                       .tm_min = v[4],
                       .tm_sec = v[5],
                       .tm_isdst = -1};
        if (set && labs((long)(mktime(&b) - time(NULL))) > 2) {
            tool_error(t, "rtc: the board did not take the time");
            code = EXIT_BOARD;
        }
    }
    cJSON_Delete(j);
    return code;
}
