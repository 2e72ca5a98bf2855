// mqrepld's event loop: one thread owns the MQTT connection (libmosquitto without its own
// thread), the core engine, all file I/O and every timer. The evaluator thread talks to it
// only through pyeval's queue and a wake-up pipe.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "fs.h"
#include "mqb/engine.h"
#include "pyeval.h"

// Messages published but not yet acknowledged by the broker beyond which streams wait.
#define OUT_QUEUE_MAX 64
// Largest eval source accepted (over all its messages).
#define EVAL_SRC_MAX (16u * 1024 * 1024)
// Output of a running eval is sent when this much is pending, or after COALESCE_MS.
#define COALESCE_BYTES 16384
#define COALESCE_MS 20
#define RECONNECT_MIN_MS 250
#define RECONNECT_MAX_MS 8000

// Eval input that spans several messages, collected until its last message.
struct eval_input {
    char id[MQB_ID_MAX + 1];
    char *buf;
    size_t len;
    bool used;
};

struct agent {
    const struct agent_config *cfg;
    struct mosquitto *mosq;
    struct mqb_engine engine;
    struct board_fs fs;
    struct pyeval *pe;
    EVP_MD_CTX *hash[MQB_MAX_XFERS];
    struct eval_input inputs[MQB_MAX_XFERS];
    int outstanding; // QoS 1 publishes not yet acknowledged by the broker
    bool connected;
    int wake[2]; // evaluator -> loop
    // The reply stream of the eval whose output is being sent.
    char out_id[MQB_ID_MAX + 1];
    uint32_t out_seq;
    uint64_t out_due_ms; // when pending output is sent even if small (0: not armed)
};

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    stop_signal = sig;
}

uint64_t agent_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void logf_(const struct agent *a, int level, const char *fmt, ...) {
    if (level > a->cfg->verbose) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fputs("mqrepld: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// ---- platform hooks for the core engine ----

static enum mqb_err p_publish(void *ctx, const char *topic, const uint8_t *payload, size_t len) {
    struct agent *a = ctx;
    int rc = mosquitto_publish(a->mosq, NULL, topic, (int)len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        logf_(a, 0, "publish to %s failed: %s", topic, mosquitto_strerror(rc));
        return MQB_ERR_IO;
    }
    a->outstanding++;
    return MQB_OK;
}

static size_t p_out_room(void *ctx) {
    struct agent *a = ctx;
    if (!a->connected || a->outstanding >= OUT_QUEUE_MAX) {
        return 0;
    }
    return (size_t)(OUT_QUEUE_MAX - a->outstanding);
}

static enum mqb_err p_open_read(void *ctx, const char *path, int *fh, uint64_t *size) {
    return fs_open_read(&((struct agent *)ctx)->fs, path, fh, size);
}

static enum mqb_err p_open_write(void *ctx, const char *path, int *fh) {
    return fs_open_write(&((struct agent *)ctx)->fs, path, fh);
}

static enum mqb_err p_read(void *ctx, int fh, uint8_t *buf, size_t cap, size_t *n) {
    return fs_read(&((struct agent *)ctx)->fs, fh, buf, cap, n);
}

static enum mqb_err p_write(void *ctx, int fh, const uint8_t *buf, size_t len) {
    return fs_write(&((struct agent *)ctx)->fs, fh, buf, len);
}

static enum mqb_err p_close(void *ctx, int fh, bool commit) {
    return fs_close(&((struct agent *)ctx)->fs, fh, commit);
}

static enum mqb_err p_hash_init(void *ctx, unsigned slot) {
    struct agent *a = ctx;
    return EVP_DigestInit_ex(a->hash[slot], EVP_sha256(), NULL) == 1 ? MQB_OK : MQB_ERR_IO;
}

static enum mqb_err p_hash_update(void *ctx, unsigned slot, const uint8_t *data, size_t len) {
    struct agent *a = ctx;
    return EVP_DigestUpdate(a->hash[slot], data, len) == 1 ? MQB_OK : MQB_ERR_IO;
}

static enum mqb_err p_hash_final(void *ctx, unsigned slot, uint8_t out[MQB_SHA256_LEN]) {
    struct agent *a = ctx;
    return EVP_DigestFinal_ex(a->hash[slot], out, NULL) == 1 ? MQB_OK : MQB_ERR_IO;
}

static struct eval_input *input_find(struct agent *a, const char *id, bool create) {
    struct eval_input *free_slot = NULL;
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        struct eval_input *in = &a->inputs[i];
        if (in->used && strcmp(in->id, id) == 0) {
            return in;
        }
        if (!in->used && free_slot == NULL) {
            free_slot = in;
        }
    }
    if (create && free_slot != NULL) {
        snprintf(free_slot->id, sizeof(free_slot->id), "%s", id);
        free_slot->buf = NULL;
        free_slot->len = 0;
        free_slot->used = true;
    }
    return create ? free_slot : NULL;
}

static void p_eval_abort(void *ctx, const char *id) {
    struct eval_input *in = input_find(ctx, id, false);
    if (in != NULL) {
        free(in->buf);
        in->used = false;
    }
}

static enum mqb_err p_eval(void *ctx, const char *id, const uint8_t *src, size_t len, bool first,
                           bool last) {
    struct agent *a = ctx;
    logf_(a, 1, "eval %s (%zu bytes%s)", id, len, last ? "" : ", more to come");
    if (first) {
        p_eval_abort(a, id);
    }
    struct eval_input *in = input_find(a, id, true);
    if (in == NULL) {
        static const char msg[] = "too many evals being received at once";
        mqb_engine_reply_err(&a->engine, id, msg, sizeof(msg) - 1);
        return MQB_ERR_BUSY;
    }
    if (in->len + len > EVAL_SRC_MAX) {
        p_eval_abort(a, id);
        static const char msg[] = "eval source too big: the board accepts at most 16 MB";
        mqb_engine_reply_err(&a->engine, id, msg, sizeof(msg) - 1);
        return MQB_ERR_TOOBIG;
    }
    in->buf = realloc(in->buf, in->len + len + 1);
    memcpy(in->buf + in->len, src, len);
    in->len += len;
    if (last) {
        pyeval_submit(a->pe, id, in->buf, in->len);
        in->used = false;
        in->buf = NULL;
    }
    return MQB_OK;
}

static enum mqb_err p_command(void *ctx, const char *cmd, const char *id, const char *tail,
                              const uint8_t *data, size_t len) {
    struct agent *a = ctx;
    (void)data;
    (void)len;
    if (strcmp(cmd, "interrupt") == 0) {
        // tail names the eval to interrupt; empty means whatever runs.
        bool hit = pyeval_interrupt(a->pe, tail[0] != '\0' ? tail : NULL);
        const char *r = hit ? "OK" : "no eval running";
        mqb_engine_reply_out(&a->engine, id, MQB_SEQ_MASK, true, (const uint8_t *)r, strlen(r));
        return MQB_OK;
    }
    return MQB_ERR_UNSUPPORTED;
}

static const struct mqb_platform platform = {
    .publish = p_publish,
    .out_room = p_out_room,
    .file_open_read = p_open_read,
    .file_open_write = p_open_write,
    .file_read = p_read,
    .file_write = p_write,
    .file_close = p_close,
    .hash_init = p_hash_init,
    .hash_update = p_hash_update,
    .hash_final = p_hash_final,
    .eval = p_eval,
    .eval_abort = p_eval_abort,
    .command = p_command,
    .agent = "mqrepld " MQREPLD_VERSION,
};

// ---- eval output -> reply messages ----

// Publishes one piece of eval output: a single message when the whole reply fits in one,
// else seq-numbered messages with the last flag on the final one, then the error if any.
static void send_eval_chunk(struct agent *a, struct pyeval_chunk *c) {
    if (strcmp(a->out_id, c->id) != 0) {
        snprintf(a->out_id, sizeof(a->out_id), "%s", c->id);
        a->out_seq = 0;
    }
    struct mqb_engine *e = &a->engine;
    if (c->done && c->error == NULL && a->out_seq == 0) {
        mqb_engine_reply_out(e, c->id, MQB_SEQ_MASK, true, c->data, c->len);
    } else if (c->done && c->error == NULL) {
        mqb_engine_reply_out(e, c->id, (uint16_t)a->out_seq, true, c->data, c->len);
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
    free(c->data);
    free(c->error);
}

// Sends pending eval output as the outgoing queue allows; small output waits COALESCE_MS so
// that many small prints travel in few messages.
static void drain_eval(struct agent *a, uint64_t now) {
    size_t min = a->out_due_ms != 0 && now >= a->out_due_ms ? 1 : COALESCE_BYTES;
    struct pyeval_chunk c;
    while (p_out_room(a) > 0 && pyeval_take(a->pe, MQB_CHUNK_MAX, min, &c)) {
        send_eval_chunk(a, &c);
        a->out_due_ms = 0;
    }
    if (!pyeval_has_output(a->pe)) {
        a->out_due_ms = 0;
    } else if (a->out_due_ms == 0) {
        a->out_due_ms = now + COALESCE_MS;
    }
}

// ---- MQTT ----

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
    struct agent *a = obj;
    if (rc != 0) {
        logf_(a, 0, "broker refused the connection: %s", mosquitto_connack_string(rc));
        return;
    }
    char topic[MQB_PREFIX_MAX + 16];
    snprintf(topic, sizeof(topic), "%s/mqb/cmd/#", a->cfg->prefix);
    mosquitto_subscribe(mosq, NULL, topic, 1);
    a->connected = true;
    a->outstanding = 0;
    logf_(a, 0, "connected to %s:%d, serving %s", a->cfg->server, a->cfg->port, topic);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    struct agent *a = obj;
    a->connected = false;
    if (rc != 0) {
        logf_(a, 0, "connection to the broker lost");
    }
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
    (void)mosq;
    (void)mid;
    struct agent *a = obj;
    if (a->outstanding > 0) {
        a->outstanding--;
    }
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m) {
    (void)mosq;
    struct agent *a = obj;
    // libmosquitto does not expose the DUP flag; the agent uses a clean session, so the
    // broker never replays an old command after a restart (see docs/protocol.md).
    enum mqb_err err = mqb_engine_input(&a->engine, m->topic, m->payload, (size_t)m->payloadlen,
                                        false, agent_now_ms());
    if (err != MQB_OK) {
        logf_(a, 1, "%s: %s", m->topic, mqb_strerror(err));
    }
}

static int mqtt_setup(struct agent *a) {
    const struct agent_config *cfg = a->cfg;
    a->mosq = mosquitto_new(cfg->client_id, true, a);
    if (a->mosq == NULL) {
        fprintf(stderr, "mqrepld: cannot create the MQTT client\n");
        return -1;
    }
    mosquitto_int_option(a->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(a->mosq, on_connect);
    mosquitto_disconnect_callback_set(a->mosq, on_disconnect);
    mosquitto_publish_callback_set(a->mosq, on_publish);
    mosquitto_message_callback_set(a->mosq, on_message);
    if (cfg->username != NULL) {
        mosquitto_username_pw_set(a->mosq, cfg->username, cfg->password);
    }
    int rc = MOSQ_ERR_SUCCESS;
    if (cfg->psk != NULL) {
        rc = mosquitto_tls_psk_set(a->mosq, cfg->psk, cfg->psk_identity, NULL);
    } else if (cfg->cafile != NULL) {
        rc = mosquitto_tls_set(a->mosq, cfg->cafile, NULL, NULL, NULL, NULL);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqrepld: TLS set-up failed: %s\n", mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

// One round of the loop: wait for the socket, the evaluator or a timer, then do the work.
static void loop_once(struct agent *a, uint64_t *retry_at, int *backoff) {
    uint64_t now = agent_now_ms();
    int sock = mosquitto_socket(a->mosq);
    if (sock < 0 && now >= *retry_at) {
        int rc = *retry_at == 0
                     ? mosquitto_connect(a->mosq, a->cfg->server, a->cfg->port, a->cfg->keepalive)
                     : mosquitto_reconnect(a->mosq);
        if (rc != MOSQ_ERR_SUCCESS) {
            logf_(a, 0, "cannot reach the broker at %s:%d (%s), retrying in %d ms", a->cfg->server,
                  a->cfg->port, mosquitto_strerror(rc), *backoff);
        }
        *retry_at = now + (uint64_t)*backoff;
        *backoff = *backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : *backoff * 2;
        sock = mosquitto_socket(a->mosq);
    }
    bool more = a->connected && mqb_engine_pump(&a->engine, now);
    int timeout = more ? 0 : 1000;
    if (a->out_due_ms != 0) {
        int due = a->out_due_ms > now ? (int)(a->out_due_ms - now) : 0;
        timeout = due < timeout ? due : timeout;
    }
    struct pollfd fds[2] = {{.fd = a->wake[0], .events = POLLIN}, {.fd = sock, .events = 0}};
    if (sock >= 0) {
        fds[1].events = POLLIN | (mosquitto_want_write(a->mosq) ? POLLOUT : 0);
    }
    if (poll(fds, sock >= 0 ? 2 : 1, timeout) < 0) {
        return; // EINTR: a signal; the caller checks stop_signal
    }
    if (sock >= 0) {
        int rc = MOSQ_ERR_SUCCESS;
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            rc = mosquitto_loop_read(a->mosq, 1);
        }
        if (rc == MOSQ_ERR_SUCCESS && (fds[1].revents & POLLOUT)) {
            rc = mosquitto_loop_write(a->mosq, 1);
        }
        if (rc == MOSQ_ERR_SUCCESS) {
            rc = mosquitto_loop_misc(a->mosq);
        }
        if (rc != MOSQ_ERR_SUCCESS) {
            a->connected = false;
            logf_(a, 0, "broker connection: %s", mosquitto_strerror(rc));
            *retry_at = agent_now_ms() + (uint64_t)*backoff;
        } else if (a->connected) {
            *backoff = RECONNECT_MIN_MS;
        }
    }
    if (fds[0].revents & POLLIN) {
        char buf[256];
        while (read(a->wake[0], buf, sizeof(buf)) > 0) {
        }
    }
    if (a->connected) {
        drain_eval(a, agent_now_ms());
    }
}

static int agent_setup(struct agent *a, const struct agent_config *cfg) {
    a->cfg = cfg;
    enum mqb_err err = fs_init(&a->fs, cfg->root);
    if (err != MQB_OK) {
        fprintf(stderr, "mqrepld: board root '%s': %s\n", cfg->root, mqb_strerror(err));
        return -1;
    }
    int cleaned = fs_clean_temps(&a->fs);
    if (cleaned > 0) {
        logf_(a, 0, "removed %d temporary file(s) of interrupted puts", cleaned);
    }
    if (mqb_engine_init(&a->engine, &platform, a, cfg->prefix) != MQB_OK) {
        fprintf(stderr, "mqrepld: prefix too long (at most %d bytes)\n", MQB_PREFIX_MAX);
        return -1;
    }
    for (unsigned i = 0; i < MQB_MAX_XFERS; i++) {
        a->hash[i] = EVP_MD_CTX_new();
    }
    if (pipe2(a->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("mqrepld: pipe");
        return -1;
    }
    a->pe = pyeval_start(a->fs.root, a->wake[1]);
    if (a->pe == NULL) {
        return -1;
    }
    return mqtt_setup(a);
}

int agent_run(const struct agent_config *cfg) {
    struct agent *a = calloc(1, sizeof(*a));
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
    logf_(a, 0, "stopping (signal %d)", (int)stop_signal);
    mqb_engine_deinit(&a->engine);
    fs_deinit(&a->fs);
    if (a->connected) {
        mosquitto_disconnect(a->mosq);
        mosquitto_loop_write(a->mosq, 1);
    }
    mosquitto_destroy(a->mosq);
    mosquitto_lib_cleanup();
    // The evaluator thread may be inside user code: leave without waiting for it.
    fflush(NULL);
    _exit(0);
}
