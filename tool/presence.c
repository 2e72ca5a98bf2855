// Is a board there, and what can it do: the presence probe before a board's first command (a
// late or stale status ends it), caps, the wait for a new boot.
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tool.h"

// Asks caps, waiting at most timeout_s (< 0: the session's silence timeout).
static int ask_caps(struct session *s, double timeout_s) {
    memset(&s->caps, 0, sizeof(s->caps));
    int code = session_begin(s, "caps");
    if (code == EXIT_OK) {
        code = session_send(s, NULL, 0, true, NULL, 0);
    }
    struct reply r;
    FILE *err = s->err;
    if (code == EXIT_OK && timeout_s >= 0) {
        s->err = fopen("/dev/null", "w"); // the caller explains a silent board
        code = session_recv(s, timeout_s, &r);
        fclose(s->err);
        s->err = err;
    } else if (code == EXIT_OK) {
        code = session_recv(s, -1, &r);
    }
    session_end(s);
    if (code != EXIT_OK) {
        return code;
    }
    // An original board answers "Command 'caps' not supported" on reply/err.
    if (!r.is_err) {
        parse_caps(r.data, r.len, &s->caps);
    }
    // --chunk caps the chunk size the board offers (slow links, benchmarks).
    if (s->o->chunk > 0 && s->caps.chunk > (size_t)s->o->chunk) {
        s->caps.chunk = (size_t)s->o->chunk;
    }
    s->caps_known = true;
    if (s->o->verbose) {
        fprintf(stderr, "mqboard: board protocol %d, chunk %zu, window %u\n", s->caps.proto,
                s->caps.chunk, s->caps.window);
    }
    return EXIT_OK;
}

// How long the tool waits for a board that has no status before it says nobody is there.
#define PROBE_S 0.7

static int say_offline(struct session *s) {
    char when[64] = "";
    time_t t = (time_t)s->status_since;
    struct tm tm;
    if (s->status_since > 0 && localtime_r(&t, &tm) != NULL) {
        strftime(when, sizeof(when), " (last booted %Y-%m-%d %H:%M:%S)", &tm);
    }
    fprintf(s->err, "mqboard: board '%s' is offline%s: its agent is not connected to the broker\n",
            s->o->prefix, when);
    return EXIT_TIMEOUT;
}

int session_present(struct session *s) {
    if (s->present || s->online == 1) {
        s->present = true;
        return EXIT_OK;
    }
    // Offline or no status: probe with caps, which a board running the original code (no
    // status) answers at once when idle. The status may also change meanwhile: a clustered
    // broker can deliver the retained status after the SUBACK, or a stale one first.
    // Long enough for a distant broker: the probe and its answer cross it twice each.
    double wait = PROBE_S > 4 * s->broker_rtt ? PROBE_S : 4 * s->broker_rtt;
    wait = s->o->timeout < wait ? s->o->timeout : wait;
    s->present = true; // the probe itself must not probe
    s->probe_was = s->online;
    s->probing = true;
    int code = ask_caps(s, wait);
    s->probing = false;
    s->present = code == EXIT_OK || s->online == 1;
    if (s->present) {
        return EXIT_OK;
    }
    if (s->online == 0 && code == EXIT_TIMEOUT) {
        return say_offline(s);
    }
    if (code == EXIT_TIMEOUT) {
        fprintf(s->err,
                "mqboard: no board answers at '%s' (no status on %s, no answer in %.1f s; "
                "is the prefix right?)\n",
                s->o->prefix, s->status_topic, wait);
    }
    return code;
}

static bool new_boot(const struct session *s, const void *old_boot_id) {
    return s->online == 1 && s->boot_id[0] != '\0' && strcmp(s->boot_id, old_boot_id) != 0;
}

int session_wait_boot(struct session *s, const char *old_boot_id, double timeout_s) {
    return session_watch(s, timeout_s, new_boot, old_boot_id);
}

int session_answers(struct session *s, double total_s) {
    double end = tool_now() + total_s;
    int code = EXIT_TIMEOUT;
    while (code == EXIT_TIMEOUT && tool_now() < end && !tool_interrupted) {
        code = ask_caps(s, PROBE_S);
    }
    return code;
}

int session_caps(struct session *s, struct board_caps *caps) {
    // The quick presence check first, as for every command: an offline board or a prefix
    // nobody serves fails in under a second, not after -T of silence.
    if (!s->caps_known && !s->present) {
        int code = session_present(s);
        if (code != EXIT_OK) {
            return code;
        }
    }
    if (!s->caps_known) {
        int code = ask_caps(s, -1);
        if (code != EXIT_OK) {
            return code;
        }
    }
    *caps = s->caps;
    return EXIT_OK;
}

int session_reset_wait(struct session *s) {
    char old[sizeof(s->reset_from)];
    snprintf(old, sizeof(old), "%s", s->reset_from);
    if (s->o->verbose) {
        fprintf(s->err, "mqboard: board '%s' resets; waiting until it is back\n", s->o->prefix);
    }
    session_lease(s, false); // what it ran is gone with the reset
    s->interrupt_at = 0;
    int code = session_wait_boot(s, old, s->o->timeout);
    // Back means answering: on a clustered broker its subscription comes after its status.
    code = code == EXIT_OK ? session_answers(s, s->o->timeout) : code;
    if (code == EXIT_TIMEOUT) {
        fprintf(s->err, "mqboard: board '%s' reset and was not back within %.1f s\n", s->o->prefix,
                s->o->timeout);
    }
    return code;
}

// The board reset while a command waited for it: the user's eval ended with the reset
// (RECV_RESET once it is back); anything else (a transfer, a listing program) cannot end
// with a reset (said, EXIT_TIMEOUT).
