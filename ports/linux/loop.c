// mqrepld's event loop: one thread owns the MQTT connection (libmosquitto without its own
// thread), the core engine, all file I/O and every timer (watchdog, output coalescing,
// resets). The evaluator thread talks to it only through pyeval's queues and a wake-up pipe.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent.h"

// Output of a running eval is sent when this much is pending, or after COALESCE_MS.
#define COALESCE_BYTES 16384
#define COALESCE_MS 20
#define RECONNECT_MIN_MS 250
#define RECONNECT_MAX_MS 8000
// A requested reset waits at most this long for the replies under way to leave, whatever
// the interpreter does.
#define RESET_GRACE_MS 1000

static volatile sig_atomic_t stop_signal;
static char **saved_argv;

static void on_stop_signal(int sig) {
    stop_signal = sig;
}

uint64_t agent_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

// ---- logging: stderr, syslog, and PREFIX/log with a rate limit ----

static bool log_token(struct agent *a) {
    uint64_t now = agent_now_ms();
    double burst = a->cfg->log_rate * 5 > 20 ? a->cfg->log_rate * 5 : 20;
    a->log_tokens += (double)(now - a->log_refill_ms) / 1000.0 * a->cfg->log_rate;
    a->log_tokens = a->log_tokens > burst ? burst : a->log_tokens;
    a->log_refill_ms = now;
    if (a->log_tokens < 1) {
        a->log_dropped++;
        return false;
    }
    a->log_tokens -= 1;
    return true;
}

// Sends one "L message" line to PREFIX/log, unless the rate limit says no.
static void publish_log_line(struct agent *a, const char *line) {
    if (!a->connected || !log_token(a)) {
        return;
    }
    char topic[MQB_PREFIX_MAX + 8];
    snprintf(topic, sizeof(topic), "%s/log", a->cfg->prefix);
    if (a->log_dropped > 0) {
        char note[64];
        int n =
            snprintf(note, sizeof(note), "W log: %u lines dropped (rate limit)", a->log_dropped);
        a->log_dropped = 0;
        mqtt_publish(a, topic, note, (size_t)n, 1, false);
    }
    mqtt_publish(a, topic, line, strlen(line), 1, false);
}

static void log_line(struct agent *a, const char *line, bool from_agent) {
    static const char letters[] = "CEWID";
    static const int prios[] = {LOG_CRIT, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    const char *l = strchr(letters, line[0]);
    int level = l != NULL ? (int)(l - letters) : 3;
    if (from_agent && (level < 4 || a->cfg->verbose > 0)) {
        fprintf(stderr, "mqrepld: %s\n", line);
    }
    if (a->cfg->syslog) {
        syslog(prios[level], "%s", line);
    }
    // The agent's own debug lines (-v) stay local; the application's go out too.
    if (!from_agent || level < 4) {
        publish_log_line(a, line);
    }
}

void agent_log(struct agent *a, char level, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    line[0] = level;
    line[1] = ' ';
    vsnprintf(line + 2, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (level == 'D' && a->cfg->verbose == 0) {
        return;
    }
    log_line(a, line, true);
}

// ---- incoming messages ----

// The watchdog's loop-back feed arrived: the broker and this loop work. Feeding also needs
// the interpreter to respond (pyeval_probe), however long the eval that runs.
static void feed_arrived(struct agent *a) {
    if (a->wdt_on) {
        pyeval_probe(a->pe);
    }
}

// --original: the commands a board running the original mqrepl.py does not know are
// refused as it refuses them (the tool's fallbacks are tested against this).
static bool refused_as_original(struct agent *a, const char *topic) {
    static const char *const ext[] = {"caps",    "xput",  "xget", "ack",  "interrupt",
                                      "running", "reset", "ans",  "mount"};
    struct mqb_topic t;
    if (!a->cfg->original || mqb_topic_parse(a->cfg->prefix, topic, strlen(topic), &t) != MQB_OK ||
        t.kind != MQB_TOPIC_CMD) {
        return false;
    }
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        if (t.cmd.len == strlen(ext[i]) && memcmp(t.cmd.ptr, ext[i], t.cmd.len) == 0) {
            char id[MQB_ID_MAX + 1], text[64];
            snprintf(id, sizeof(id), "%.*s", (int)t.id.len, t.id.ptr);
            int n = snprintf(text, sizeof(text), "Command '%s' not supported", ext[i]);
            mqb_engine_reply_err(&a->engine, id, text, (size_t)n);
            return true;
        }
    }
    return false;
}

// A command that must not run late: a retained one (the broker would hand it to every boot),
// or the first message of one whose id carries a deadline that has passed (sent while the
// board was away, delivered hours later). Answered with an error, never run.
static bool too_late(struct agent *a, const struct mosquitto_message *m) {
    struct mqb_topic t;
    struct mqb_hdr h;
    if (a->cfg->original ||
        mqb_topic_parse(a->cfg->prefix, m->topic, strlen(m->topic), &t) != MQB_OK ||
        t.kind != MQB_TOPIC_CMD) {
        return false;
    }
    if (m->retain) {
        agent_log(a, 'W', "ignored a retained command (%s): commands never run at connect",
                  m->topic);
        return true;
    }
    char id[MQB_ID_MAX + 1];
    snprintf(id, sizeof(id), "%.*s", (int)t.id.len, t.id.ptr);
    uint32_t deadline = mqb_id_deadline(id);
    time_t now = time(NULL);
    if (deadline == 0 || now <= (time_t)deadline ||
        mqb_hdr_decode(m->payload, (size_t)m->payloadlen, &h) != MQB_OK ||
        !(h.seq == 0 || mqb_hdr_is_single(&h))) {
        return false;
    }
    char text[200], when[32];
    time_t d = (time_t)deadline;
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&d, &tm));
    int n = snprintf(text, sizeof(text),
                     "command expired: it had to start by %s, %lld s ago by the board's clock "
                     "(mqboard --expire sets the limit)",
                     when, (long long)(now - d));
    mqb_engine_reply_err(&a->engine, id, text, (size_t)n);
    agent_log(a, 'W', "%s: expired %lld s ago, not run", m->topic, (long long)(now - d));
    return true;
}

void agent_on_message(struct agent *a, const struct mosquitto_message *m) {
    char plain[MQB_PREFIX_MAX + 16];
    snprintf(plain, sizeof(plain), "%s/repl/in", a->cfg->prefix);
    if (strcmp(m->topic, MQB_DISCOVER_TOPIC) == 0) {
        // A host lists the boards: the status again, not retained; anyone may ask, so the
        // answers are a token bucket (a burst of 8, then 2 a second), never a flood.
        uint64_t now = agent_now_ms();
        a->discover_tokens += (double)(now - a->discover_ms) / 500.0;
        a->discover_tokens = a->discover_tokens > 8 ? 8 : a->discover_tokens;
        a->discover_ms = now;
        if (a->discover_tokens >= 1) {
            a->discover_tokens -= 1;
            mqtt_send_status(a, true, false);
        }
        return;
    }
    if (strcmp(m->topic, a->feed_topic) == 0) {
        feed_arrived(a);
        return;
    }
    // The plain interface carries no signature: a board with authorized keys has none.
    if (a->cfg->plain_repl && a->trust.auth.nkeys == 0 && strcmp(m->topic, plain) == 0) {
        // The first seed's interface: the payload is Python source, the answer one JSON.
        char id[MQB_ID_MAX + 1];
        snprintf(id, sizeof(id), "repl-in-%u", a->plain_seq++);
        char *src = malloc((size_t)m->payloadlen + 1);
        if (m->payloadlen > 0) {
            memcpy(src, m->payload, (size_t)m->payloadlen);
        }
        if (!pyeval_submit(a->pe, id, src, (size_t)m->payloadlen, true)) {
            agent_log(a, 'W', "repl/in: dropped (too many evals queued)");
        }
        return;
    }
    if (refused_as_original(a, m->topic) || too_late(a, m)) {
        return;
    }
    // libmosquitto does not expose the DUP flag; the agent uses a clean session, so the
    // broker never replays an old command after a restart (see docs/protocol.md).
    enum mqb_err err = mqb_engine_input(&a->engine, m->topic, m->payload, (size_t)m->payloadlen,
                                        false, agent_now_ms());
    if (err != MQB_OK && err != MQB_ERR_DUP) {
        agent_log(a, 'D', "%s: %s", m->topic, mqb_strerror(err));
    }
}

// ---- eval output -> replies ----

static void send_json_reply(struct agent *a, struct pyeval_chunk *c) {
    cJSON *j = cJSON_CreateObject();
    if (c->result != NULL) {
        cJSON_AddStringToObject(j, "r", c->result);
    } else {
        cJSON_AddNullToObject(j, "r");
    }
    char *out = strndup((const char *)c->data, c->len);
    cJSON_AddStringToObject(j, "o", out);
    free(out);
    if (c->error != NULL) {
        cJSON_AddStringToObject(j, "e", c->error);
    } else {
        cJSON_AddNullToObject(j, "e");
    }
    cJSON_AddBoolToObject(j, "x", c->is_exec);
    char *s = cJSON_PrintUnformatted(j);
    char topic[MQB_PREFIX_MAX + 16];
    snprintf(topic, sizeof(topic), "%s/repl/out", a->cfg->prefix);
    mqtt_publish(a, topic, s, strlen(s), 1, false);
    free(s);
    cJSON_Delete(j);
}

// Publishes one piece of eval output: a single message when the whole reply fits in one,
// else seq-numbered messages with the last flag on the final one, then the error if any.
static void send_eval_chunk(struct agent *a, struct pyeval_chunk *c) {
    struct mqb_engine *e = &a->engine;
    if (c->json) {
        send_json_reply(a, c);
    } else {
        if (strcmp(a->out_id, c->id) != 0) {
            snprintf(a->out_id, sizeof(a->out_id), "%s", c->id);
            a->out_seq = 0;
        }
        if (c->done && c->error == NULL && a->out_seq == 0) {
            mqb_engine_reply_out(e, c->id, MQB_SEQ_MASK, true, c->data, c->len);
        } else if (c->done && c->error == NULL) {
            mqb_engine_reply_out(e, c->id, (uint16_t)(a->out_seq & MQB_SEQ_MASK), true, c->data,
                                 c->len);
        } else if (c->len > 0) {
            mqb_engine_reply_out(e, c->id, (uint16_t)(a->out_seq & MQB_SEQ_MASK), false, c->data,
                                 c->len);
            a->out_seq++;
        }
        if (c->done && c->error != NULL) {
            mqb_engine_reply_err(e, c->id, c->error, strlen(c->error));
        }
        if (c->done) {
            a->out_id[0] = '\0';
        }
    }
    free(c->data);
    free(c->error);
    free(c->result);
}

// Sends pending eval output as the outgoing queue allows; small output waits COALESCE_MS so
// that many small prints travel in few messages.
static void drain_eval(struct agent *a, uint64_t now) {
    if (a->reset_mode != 0 && a->outstanding > 0) {
        return; // the reset's announcement (status "resetting") is acknowledged first: a
                // host must see it before the last reply of the eval that asked (clusters)
    }
    size_t min = a->out_due_ms != 0 && now >= a->out_due_ms ? 1 : COALESCE_BYTES;
    struct pyeval_chunk c;
    while (agent_platform.out_room(a) > 0 && pyeval_take(a->pe, MQB_CHUNK_MAX, min, &c)) {
        send_eval_chunk(a, &c);
        a->out_due_ms = 0;
    }
    if (!pyeval_has_output(a->pe)) {
        a->out_due_ms = 0;
    } else if (a->out_due_ms == 0) {
        a->out_due_ms = now + COALESCE_MS;
    }
}

// ---- resets, watchdog, boot ----

static void rtc_set_magic(struct agent *a, bool normal) {
    if (rtc_mark(a->cfg->rtc_file, normal) != 0) {
        agent_log(a, 'E', "cannot write RTC memory %s: %s", a->cfg->rtc_file, strerror(errno));
    }
}

// A reset asked for through the broker proved control by arriving: the next boot is normal
// unless safe mode ('f') was asked for. One the application asks for itself keeps the
// safe-mode rule (a crash loop must end in safe mode). after_id: the eval that asked, whose
// reply leaves first.
void agent_request_reset(struct agent *a, char mode, bool via_broker, const char *after_id) {
    if (mode == 'n' || mode == 'f' || via_broker) {
        rtc_set_magic(a, mode != 'f');
    }
    snprintf(a->reset_after, sizeof(a->reset_after), "%s", after_id != NULL ? after_id : "");
    a->reset_mode = mode;
    a->reset_at = agent_now_ms() + RESET_GRACE_MS;
    if (a->connected) {
        mqtt_publish_status(a, true); // "resetting": hosts waiting on it wait for the new boot
        if (after_id != NULL && after_id[0] != '\0' && !a->cfg->original) {
            // The eval that asked: its host waits for the new boot before it ends the eval.
            // Its last reply is held until this is acknowledged (drain_eval), so that it
            // comes first on every broker (the status may come late on a cluster).
            char topic[MQB_TOPIC_MAX];
            snprintf(topic, sizeof(topic), "%s/mqb/reply/reset/%s", a->cfg->prefix, after_id);
            mqtt_publish(a, topic, &mode, 1, 1, false);
        }
    }
    agent_log(a, 'W', "reset requested (%s)",
              mode == 'n'   ? "into normal mode"
              : mode == 'f' ? "into safe mode"
              : mode == 's' ? "soft"
                            : "hard");
}

static void disconnect(struct agent *a) {
    if (a->connected) {
        mqtt_publish_status(a, false);
        mosquitto_disconnect(a->mosq);
        for (int i = 0; i < 10 && mosquitto_want_write(a->mosq); i++) {
            mosquitto_loop_write(a->mosq, 1);
        }
    }
    mosquitto_destroy(a->mosq);
    a->mosq = NULL;
}

// Resets now: the launcher restarts a supervised agent; otherwise the agent re-executes
// itself (same PID) with the reset cause in its environment.
static void do_reset(struct agent *a, int cause) {
    mqb_engine_deinit(&a->engine);
    fs_deinit(&a->fs);
    disconnect(a);
    fflush(NULL);
    if (a->heartbeat_fd >= 0) {
        _exit(cause == CAUSE_WDT    ? EXIT_WATCHDOG
              : cause == CAUSE_SOFT ? EXIT_RESET_SOFT
                                    : EXIT_RESET);
    }
    char v[16];
    snprintf(v, sizeof(v), "%d", cause);
    setenv("MQREPLD_RESET_CAUSE", v, 1);
    // The interpreter changed into the board's root; the command line's relative paths are
    // from where mqrepld started.
    if (a->start_dir < 0 || fchdir(a->start_dir) != 0) {
        perror("mqrepld: back to the start directory for reset");
    }
    execv("/proc/self/exe", saved_argv);
    perror("mqrepld: re-exec for reset failed");
    _exit(1);
}

static void feed_accepted(struct agent *a) {
    char b = 1;
    if (a->heartbeat_fd >= 0 && write(a->heartbeat_fd, &b, 1) < 0) {
        agent_log(a, 'W', "launcher heartbeat: %s", strerror(errno));
    }
    if (a->hw_wdt_fd >= 0 && write(a->hw_wdt_fd, &b, 1) < 0) {
        agent_log(a, 'W', "hardware watchdog: %s", strerror(errno));
    }
}

// What watchdog.status() shows: a JSON snapshot (times on the monotonic clock, as Python's
// time.monotonic() reads it), refreshed whenever the watchdog's state changes.
static void publish_wdt_status(struct agent *a) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "enabled", a->wdt_on);
    cJSON_AddStringToObject(j, "mode", a->mode == MQB_BOOT_SAFE ? "safe" : "normal");
    if (a->wdt_on) {
        const struct mqb_wdt *w = &a->wdt;
        cJSON_AddNumberToObject(j, "timeout", w->timeout_ms / 1000.0);
        cJSON_AddNumberToObject(j, "allok", w->allok_ms / 1000.0);
        cJSON_AddNumberToObject(j, "last_feed", (double)w->last_feed_ms / 1000.0);
        cJSON_AddBoolToObject(j, "allok_done", w->allok_done);
        cJSON *checks = cJSON_AddObjectToObject(j, "checks");
        for (int i = 0; i < MQB_WDT_CHECKS; i++) {
            if (w->checks[i].period_ms != 0) {
                cJSON *c = cJSON_AddObjectToObject(checks, w->checks[i].name);
                cJSON_AddNumberToObject(c, "period", w->checks[i].period_ms / 1000.0);
                cJSON_AddNumberToObject(c, "last_ok", (double)w->checks[i].last_ok_ms / 1000.0);
            }
        }
    }
    char *text = cJSON_PrintUnformatted(j);
    pyeval_set_wdt_status(a->pe, text);
    free(text);
    cJSON_Delete(j);
}

static void handle_event(struct agent *a, struct pyeval_event *ev) {
    uint64_t now = agent_now_ms();
    switch (ev->kind) {
    case PYEVAL_LOG: log_line(a, ev->text, false); break;
    case PYEVAL_RESET: agent_request_reset(a, ev->text[0], ev->seconds > 0, ev->job); break;
    case PYEVAL_WDT_FEED:
        if (a->wdt_on && mqb_wdt_feed(&a->wdt, now)) {
            feed_accepted(a);
        } else if (a->wdt_on) {
            agent_log(a, 'W', "watchdog not fed: application check '%s' is overdue",
                      mqb_wdt_overdue(&a->wdt, now));
        }
        break;
    case PYEVAL_WDT_REQUIRE:
        if (a->wdt_on &&
            (!(ev->seconds > 0 && ev->seconds * 1000 < UINT32_MAX) ||
             mqb_wdt_require(&a->wdt, ev->text, (uint32_t)(ev->seconds * 1000), now) != MQB_OK)) {
            agent_log(a, 'E', "watchdog: cannot register check '%s'", ev->text);
        }
        break;
    case PYEVAL_WDT_OK:
        if (a->wdt_on) {
            mqb_wdt_ok(&a->wdt, ev->text, now);
        }
        break;
    }
    if (ev->kind != PYEVAL_LOG && ev->kind != PYEVAL_RESET) {
        publish_wdt_status(a);
    }
    free(ev->text);
}

static void send_feed(struct agent *a) {
    static const char msg[] = "\x80\x00watchdog.feed()";
    if (a->connected) {
        mqtt_publish(a, a->feed_topic, msg, sizeof(msg) - 1, 1, false);
    }
}

static void watchdog_tick(struct agent *a, uint64_t now) {
    unsigned act = mqb_wdt_tick(&a->wdt, now);
    if (act != 0) {
        publish_wdt_status(a);
    }
    if (act & MQB_WDT_EXPIRED) {
        // Control was lost: whatever this boot earned before, the next one is safe mode.
        agent_log(a, 'C', "watchdog expired: not controllable for %g s: resetting into safe mode",
                  a->cfg->wdt_timeout);
        rtc_set_magic(a, false);
        do_reset(a, CAUSE_WDT);
    }
    if (act & MQB_WDT_SEND_FEED) {
        send_feed(a);
    }
    if (act & MQB_WDT_ALLOK) {
        // This boot stayed controllable: the next boot may be normal, a new image is good.
        rtc_set_magic(a, true);
        if (slots_mark_valid(&a->slots)) {
            agent_log(a, 'W', "OTA: slot %d marked valid", a->slots.running);
            mqtt_publish_status(a, true); // "image":"valid": a rollout waits for this
        }
        if (a->mode == MQB_BOOT_SAFE) {
            agent_log(a, 'C', "controllable for %g s in safe mode: resetting into normal mode",
                      a->cfg->allok);
            agent_request_reset(a, 'n', true, NULL);
        } else {
            agent_log(a, 'I', "controllable for %g s: next boot normal", a->cfg->allok);
        }
    }
}

// Applies the safe-mode rule at boot and clears the magic, so that the next boot is normal
// only if this one earns it.
static void decide_boot_mode(struct agent *a) {
    a->mode = MQB_BOOT_NORMAL;
    if (!a->wdt_on) {
        return; // without a watchdog nothing could ever earn normal mode back
    }
    uint8_t mem[RTC_MEMORY_MAX];
    int n = rtc_read(a->cfg->rtc_file, mem, sizeof(mem));
    a->mode = mqb_boot_mode(mem, (size_t)n);
    rtc_set_magic(a, false);
}

// ---- the loop ----

static void connect_if_due(struct agent *a, uint64_t now, uint64_t *retry_at, int *backoff) {
    if (mosquitto_socket(a->mosq) >= 0 || now < *retry_at) {
        return;
    }
    int rc = mqtt_connect(a);
    if (rc != MOSQ_ERR_SUCCESS) {
        agent_log(a, 'W', "cannot reach the broker at %s:%d (%s), retrying in %d ms",
                  a->cfg->server, a->cfg->port,
                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc), *backoff);
    }
    *retry_at = now + (uint64_t)*backoff;
    *backoff = *backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : *backoff * 2;
}

static int poll_timeout(struct agent *a, uint64_t now, bool more) {
    int timeout = more ? 0 : 1000;
    if (a->out_due_ms != 0) {
        int due = a->out_due_ms > now ? (int)(a->out_due_ms - now) : 0;
        timeout = due < timeout ? due : timeout;
    }
    if (a->wdt_on) {
        int due = (int)mqb_wdt_next_ms(&a->wdt, now);
        timeout = due < timeout ? due : timeout;
    }
    if (a->reset_mode != 0) {
        timeout = timeout > 20 ? 20 : timeout;
    }
    return timeout > 250 ? 250 : timeout; // leases are checked at least this often
}

static void network_io(struct agent *a, short revents, uint64_t *retry_at, int *backoff) {
    int rc = MOSQ_ERR_SUCCESS;
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        rc = mosquitto_loop_read(a->mosq, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS && (revents & POLLOUT)) {
        rc = mosquitto_loop_write(a->mosq, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS) {
        rc = mosquitto_loop_misc(a->mosq);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        if (a->connected) {
            agent_log(a, 'W', "broker connection: %s", mosquitto_strerror(rc));
        }
        a->connected = false;
        mosquitto_disconnect(a->mosq);
        *retry_at = agent_now_ms() + (uint64_t)*backoff;
    } else if (a->connected) {
        *backoff = RECONNECT_MIN_MS;
    }
}

// Publishes the question the board's Python asks its host (reply/ask/<id>), after the
// output the eval printed before it (the prompt of input()).
static void send_asks(struct agent *a) {
    char to[MQB_ID_MAX + 1], topic[MQB_TOPIC_MAX];
    uint8_t *payload;
    size_t len;
    while (a->connected && ask_take(&a->ask, to, &payload, &len)) {
        a->out_due_ms = 1; // due now
        drain_eval(a, agent_now_ms());
        snprintf(topic, sizeof(topic), "%s/mqb/reply/ask/%s", a->cfg->prefix, to);
        mqb_engine_publish_signed(&a->engine, topic, payload, len, MQB_HDR_LEN);
        free(payload);
    }
}

// Interrupts an eval whose requester stopped renewing its lease (or drops it if queued).
static void expire_leases(struct agent *a, uint64_t now) {
    char id[MQB_ID_MAX + 1];
    int what;
    if (ask_mount_expire(&a->ask, now, id, sizeof(id))) {
        agent_log(a, 'W', "/remote unmounted: its host %s is gone (lease ended)", id);
    }
    while ((what = pyeval_expire(a->pe, pyeval_now_ms(), id, sizeof(id))) != 0) {
        agent_log(a, 'W', "eval %s: its requester is gone (lease ended): %s", id,
                  what == 1 ? "interrupting it" : "dropped before it ran");
        if (what == 1) {
            break; // the running one is interrupted again in a second, if need be
        }
    }
}

// One round of the loop: wait for the socket, the evaluator or a timer, then do the work.
static void loop_once(struct agent *a, uint64_t *retry_at, int *backoff) {
    uint64_t now = agent_now_ms();
    connect_if_due(a, now, retry_at, backoff);
    int sock = mosquitto_socket(a->mosq);
    bool more = a->connected && mqb_engine_pump(&a->engine, now);
    struct pollfd fds[2] = {{.fd = a->wake[0], .events = POLLIN}, {.fd = sock, .events = 0}};
    if (sock >= 0) {
        fds[1].events = POLLIN | (mosquitto_want_write(a->mosq) ? POLLOUT : 0);
    }
    if (poll(fds, sock >= 0 ? 2 : 1, poll_timeout(a, now, more)) < 0) {
        return; // EINTR: a signal; the caller checks stop_signal
    }
    if (sock >= 0) {
        network_io(a, fds[1].revents, retry_at, backoff);
    }
    if (!mosquitto_want_write(a->mosq)) {
        fs_drop_replaced(&a->fs); // the commits' replies have left
    }
    if (fds[0].revents & POLLIN) {
        char buf[256];
        while (read(a->wake[0], buf, sizeof(buf)) > 0) {
        }
    }
    struct pyeval_event ev;
    while (pyeval_take_event(a->pe, &ev)) {
        handle_event(a, &ev);
    }
    now = agent_now_ms();
    send_asks(a);
    if (a->connected) {
        drain_eval(a, now);
    }
    if (a->wdt_on) {
        watchdog_tick(a, now);
    }
    expire_leases(a, now);
    // A reset waits until the replies under way (the reset command's own) have left.
    if (a->reset_mode != 0 &&
        (now >= a->reset_at || (a->outstanding == 0 && (a->reset_after[0] == '\0' ||
                                                        !pyeval_known(a->pe, a->reset_after))))) {
        do_reset(a, a->reset_mode == 's' ? CAUSE_SOFT : CAUSE_HARD);
    }
}

// Fills buf with cap-1 random hex digits (the feed id and boot id need not be secret from the
// board's own readers, only unguessable to other clients).
static void random_hex(char *buf, size_t cap) {
    uint8_t rnd[32];
    size_t n = (cap - 1) / 2 < sizeof(rnd) ? (cap - 1) / 2 : sizeof(rnd);
    if (getrandom(rnd, n, 0) != (ssize_t)n) {
        uint64_t v = agent_now_ms() ^ (uint64_t)getpid() << 32;
        for (size_t i = 0; i < n; i++) {
            rnd[i] = (uint8_t)(v >> (8 * (i % 8)));
        }
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(buf + 2 * i, 3, "%02x", rnd[i]);
    }
    buf[2 * n] = '\0';
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? atoi(v) : dflt;
}

static int agent_setup(struct agent *a, const struct agent_config *cfg) {
    a->cfg = cfg;
    a->boot_time = (long)time(NULL);
    // No cause handed down, but RTC memory survived: the agent itself was restarted.
    uint8_t mem[4];
    a->reset_cause =
        env_int("MQREPLD_RESET_CAUSE",
                rtc_read(cfg->rtc_file, mem, sizeof(mem)) > 0 ? CAUSE_RESTART : CAUSE_PWRON);
    unsetenv("MQREPLD_RESET_CAUSE");
    random_hex(a->boot_id, sizeof(a->boot_id));
    if (cfg->keys != NULL && !cfg->original && trust_open(&a->trust, cfg->keys, a->boot_id) != 0) {
        return -1;
    }
    char feed_id[17];
    random_hex(feed_id, sizeof(feed_id));
    snprintf(a->feed_topic, sizeof(a->feed_topic), "%s/mqb/cmd/eval/F%s/", cfg->prefix, feed_id);
    a->heartbeat_fd = env_int("MQREPLD_HEARTBEAT_FD", -1);
    a->hw_wdt_fd = -1;
    a->slots.running = -1;
    a->log_tokens = cfg->log_rate;
    a->log_refill_ms = agent_now_ms();
    a->wdt_on = cfg->wdt_timeout > 0;
    if (cfg->syslog) {
        openlog("mqrepld", LOG_PID, LOG_DAEMON);
    }
    decide_boot_mode(a);
    if (cfg->slots != NULL && slots_open(&a->slots, cfg->slots, env_int("MQREPLD_SLOT", 0)) != 0) {
        fprintf(stderr, "mqrepld: cannot read the boot-state record in %s\n", cfg->slots);
        a->slots.running = -1;
    }
    if (cfg->hw_watchdog != NULL &&
        (a->hw_wdt_fd = open(cfg->hw_watchdog, O_WRONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "mqrepld: cannot open %s: %s\n", cfg->hw_watchdog, strerror(errno));
        return -1;
    }
    enum mqb_err err = fs_init(&a->fs, cfg->root);
    if (err != MQB_OK) {
        fprintf(stderr, "mqrepld: board root '%s': %s\n", cfg->root, mqb_strerror(err));
        return -1;
    }
    int cleaned = fs_clean_temps(&a->fs);
    if (cleaned < 0) {
        fprintf(stderr, "mqrepld: cannot use %s/" FS_TMP_DIR " for temporary files\n", a->fs.root);
        return -1;
    }
    if (mqb_engine_init(&a->engine, &agent_platform, a, cfg->prefix, agent_name()) != MQB_OK) {
        fprintf(stderr, "mqrepld: prefix too long (at most %d bytes)\n", MQB_PREFIX_MAX);
        return -1;
    }
    mqb_engine_set_auth(&a->engine, &a->trust.auth);
    for (unsigned i = 0; i < MQB_HASH_SLOTS; i++) {
        a->hash[i] = EVP_MD_CTX_new();
    }
    if (pipe2(a->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("mqrepld: pipe");
        return -1;
    }
    ask_init(&a->ask);
    struct pyeval_config pc = {
        .root = a->fs.root,
        .rtc_path = cfg->rtc_file,
        .version = agent_version(),
        .reset_cause = a->reset_cause == CAUSE_RESTART ? CAUSE_HARD : a->reset_cause,
        .safe_mode = a->mode == MQB_BOOT_SAFE,
        .wake_fd = a->wake[1],
        .original = cfg->original,
        .ask = &a->ask,
    };
    a->pe = pyeval_start(&pc);
    if (a->pe == NULL || mqtt_setup(a) != 0) {
        return -1;
    }
    if (cleaned > 0) {
        agent_log(a, 'I', "removed %d temporary file(s) of interrupted puts", cleaned);
    }
    if (a->wdt_on) {
        mqb_wdt_init(&a->wdt, (uint32_t)(cfg->wdt_timeout * 1000), (uint32_t)(cfg->allok * 1000),
                     agent_now_ms());
    }
    publish_wdt_status(a);
    pyeval_start_app(a->pe);
    return 0;
}

int agent_run(const struct agent_config *cfg, char **argv) {
    static struct agent agent; // large (the engine's chunk buffer): not on the stack
    struct agent *a = &agent;
    saved_argv = argv;
    a->start_dir = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    // Signals: SIGTERM/SIGINT stop the loop; SIGPIPE is reported as an error on write.
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    mosquitto_lib_init();
    if (agent_setup(a, cfg) != 0) {
        return 1;
    }
    uint64_t retry_at = 0;
    int backoff = RECONNECT_MIN_MS;
    while (!stop_signal) {
        loop_once(a, &retry_at, &backoff);
    }
    agent_log(a, 'I', "stopping (signal %d)", (int)stop_signal);
    // A deliberate stop is not a crash: the agent's next start is normal (power loss, a
    // crash or the watchdog still lead to safe mode).
    if (a->wdt_on && a->reset_mode != 'f') {
        rtc_set_magic(a, true);
    }
    mqb_engine_deinit(&a->engine);
    fs_deinit(&a->fs);
    disconnect(a);
    trust_close(&a->trust);
    if (a->hw_wdt_fd >= 0) {
        // The magic close: a clean stop disarms the hardware watchdog.
        if (write(a->hw_wdt_fd, "V", 1) < 0) {
            perror("mqrepld: hardware watchdog");
        }
        close(a->hw_wdt_fd);
    }
    mosquitto_lib_cleanup();
    // The evaluator thread may be inside user code: leave without waiting for it.
    fflush(NULL);
    _exit(0);
}
