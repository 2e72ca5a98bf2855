// fleetsim: many simulated boards in one process, for the fleet benchmark (bench/fleet.py).
// A SIMULATOR, not a board: each simulated board has a connection of its own, a retained
// status with a last will as mqrepld's, and the core engine (core/) for caps, put/xput,
// get/xget and acks; files are hashed and counted, never stored (a put is still verified end
// to end by its SHA-256); "eval" only adds integers ("1+1" answers "2"), anything else is
// an error reply. No interpreter, no watchdog, no OTA.
//
//     fleetsim PORT BASE N     boards BASE/s0000 ... BASE/s<N-1> on 127.0.0.1:PORT
//
// Prints "ready" once every board is connected and subscribed; stops on SIGTERM/SIGINT.
#define _GNU_SOURCE
#include <mosquitto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mqb/engine.h"

#define OUT_MAX 64        // unacknowledged publishes per board, as mqrepld
#define EVAL_MAX 65536    // eval source kept per board
#define BOARDS_MAX 100000 // boards per process

struct sim {
    struct mosquitto *m;
    struct mqb_engine e;
    char prefix[64];
    int outstanding;
    bool ready;
    EVP_MD_CTX *hash[MQB_HASH_SLOTS];
    char eval[EVAL_MAX + 1];
    size_t eval_len;
};

static volatile sig_atomic_t stopping;

static void on_stop(int sig) {
    stopping = sig;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

// ---- the engine's platform: publish with a bound, files that go nowhere ----

static enum mqb_err p_publish(void *ctx, const char *topic, const uint8_t *p, size_t len) {
    struct sim *s = ctx;
    s->outstanding++;
    return mosquitto_publish(s->m, NULL, topic, (int)len, p, 1, false) == MOSQ_ERR_SUCCESS
               ? MQB_OK
               : MQB_ERR_IO;
}

static size_t p_out_room(void *ctx) {
    struct sim *s = ctx;
    return s->outstanding < OUT_MAX ? (size_t)(OUT_MAX - s->outstanding) : 0;
}

static enum mqb_err p_open_read(void *ctx, const char *path, int *fh, uint64_t *size) {
    (void)ctx, (void)path, (void)fh, (void)size;
    return MQB_ERR_NOENT; // a simulated board stores nothing
}

static enum mqb_err p_open_write(void *ctx, const char *path, int *fh) {
    (void)ctx, (void)path;
    *fh = 0;
    return MQB_OK;
}

static enum mqb_err p_read(void *ctx, int fh, uint8_t *buf, size_t cap, size_t *n) {
    (void)ctx, (void)fh, (void)buf, (void)cap;
    *n = 0;
    return MQB_OK;
}

static enum mqb_err p_write(void *ctx, int fh, const uint8_t *buf, size_t len) {
    (void)ctx, (void)fh, (void)buf, (void)len;
    return MQB_OK;
}

static enum mqb_err p_close(void *ctx, int fh, bool commit) {
    (void)ctx, (void)fh, (void)commit;
    return MQB_OK;
}

static enum mqb_err p_hash_init(void *ctx, unsigned slot) {
    struct sim *s = ctx;
    return EVP_DigestInit_ex(s->hash[slot], EVP_sha256(), NULL) == 1 ? MQB_OK : MQB_ERR_IO;
}

static enum mqb_err p_hash_update(void *ctx, unsigned slot, const uint8_t *d, size_t len) {
    struct sim *s = ctx;
    return EVP_DigestUpdate(s->hash[slot], d, len) == 1 ? MQB_OK : MQB_ERR_IO;
}

static enum mqb_err p_hash_final(void *ctx, unsigned slot, uint8_t out[MQB_SHA256_LEN]) {
    struct sim *s = ctx;
    return EVP_DigestFinal_ex(s->hash[slot], out, NULL) == 1 ? MQB_OK : MQB_ERR_IO;
}

// "a+b+c" of decimal integers; false for anything else.
static bool add_up(const char *src, long long *sum) {
    char *end;
    *sum = 0;
    for (const char *p = src;; p = end + 1) {
        *sum += strtoll(p, &end, 10);
        if (end == p || (*end != '+' && *end != '\0' && *end != '\n')) {
            return false;
        }
        if (*end != '+') {
            return true;
        }
    }
}

static enum mqb_err p_eval(void *ctx, const char *id, const uint8_t *src, size_t len, bool first,
                           bool last) {
    struct sim *s = ctx;
    if (first) {
        s->eval_len = 0;
    }
    size_t take = len < EVAL_MAX - s->eval_len ? len : EVAL_MAX - s->eval_len;
    memcpy(s->eval + s->eval_len, src, take);
    s->eval_len += take;
    if (!last) {
        return MQB_OK;
    }
    s->eval[s->eval_len] = '\0';
    long long sum;
    char out[32];
    if (!add_up(s->eval, &sum)) {
        static const char err[] = "fleetsim: a simulated board only adds integers\n";
        return mqb_engine_reply_err(&s->e, id, err, sizeof(err) - 1);
    }
    int n = snprintf(out, sizeof(out), "%lld\n", sum);
    return mqb_engine_reply_out(&s->e, id, MQB_SEQ_MASK, true, (const uint8_t *)out, (size_t)n);
}

static void p_eval_abort(void *ctx, const char *id) {
    (void)id;
    ((struct sim *)ctx)->eval_len = 0;
}

static const struct mqb_platform sim_platform = {
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
};

// ---- MQTT ----

static void status(struct sim *s, bool online, char *out, size_t cap) {
    snprintf(out, cap,
             "{\"status\":\"%s\",\"agent\":\"fleetsim 0.1.0\",\"mode\":\"normal\","
             "\"boot_time\":%lld,\"boot_id\":\"%016llx\",\"reset_cause\":\"power-on\"}",
             online ? "online" : "offline", (long long)time(NULL),
             (unsigned long long)(uintptr_t)s ^ (unsigned long long)time(NULL));
}

static void on_connect(struct mosquitto *m, void *obj, int rc) {
    struct sim *s = obj;
    if (rc != 0) {
        fprintf(stderr, "fleetsim: %s refused: %s\n", s->prefix, mosquitto_connack_string(rc));
        return;
    }
    char topic[MQB_TOPIC_MAX], text[256];
    snprintf(topic, sizeof(topic), "%s/mqb/cmd/#", s->prefix);
    mosquitto_subscribe(m, NULL, topic, 1);
    snprintf(topic, sizeof(topic), "%s/mqb/status", s->prefix);
    status(s, true, text, sizeof(text));
    s->outstanding++;
    mosquitto_publish(m, NULL, topic, (int)strlen(text), text, 1, true);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *q) {
    (void)m, (void)mid, (void)n, (void)q;
    ((struct sim *)obj)->ready = true;
}

static void on_publish(struct mosquitto *m, void *obj, int mid) {
    (void)m, (void)mid;
    struct sim *s = obj;
    s->outstanding -= s->outstanding > 0;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m;
    struct sim *s = obj;
    if (!msg->retain) { // as mqrepld: a retained command never runs
        mqb_engine_input(&s->e, msg->topic, msg->payload, (size_t)msg->payloadlen, false, now_ms());
    }
}

static int sim_start(struct sim *s, const char *base, int i, int port) {
    snprintf(s->prefix, sizeof(s->prefix), "%s/s%04d", base, i);
    for (unsigned k = 0; k < MQB_HASH_SLOTS; k++) {
        s->hash[k] = EVP_MD_CTX_new();
    }
    if (mqb_engine_init(&s->e, &sim_platform, s, s->prefix, "fleetsim 0.1.0") != MQB_OK ||
        (s->m = mosquitto_new(NULL, true, s)) == NULL) {
        return -1;
    }
    mosquitto_int_option(s->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(s->m, on_connect);
    mosquitto_subscribe_callback_set(s->m, on_subscribe);
    mosquitto_publish_callback_set(s->m, on_publish);
    mosquitto_message_callback_set(s->m, on_message);
    char topic[MQB_TOPIC_MAX], will[256];
    snprintf(topic, sizeof(topic), "%s/mqb/status", s->prefix);
    status(s, false, will, sizeof(will));
    mosquitto_will_set(s->m, topic, (int)strlen(will), will, 1, true);
    return mosquitto_connect(s->m, "127.0.0.1", port, 60) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

// One round: poll every board's socket, then read, write, keep alive and pump each engine.
static void run_once(struct sim *v, int n, struct pollfd *p) {
    for (int i = 0; i < n; i++) {
        p[i].fd = mosquitto_socket(v[i].m);
        p[i].events = POLLIN | (mosquitto_want_write(v[i].m) ? POLLOUT : 0);
    }
    if (poll(p, (nfds_t)n, 50) < 0) {
        return;
    }
    for (int i = 0; i < n; i++) {
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
            mosquitto_loop_read(v[i].m, 1);
        }
        while (mqb_engine_pump(&v[i].e, now_ms())) {
        }
        if (mosquitto_want_write(v[i].m)) {
            mosquitto_loop_write(v[i].m, 1);
        }
        mosquitto_loop_misc(v[i].m);
    }
}

int main(int argc, char **argv) {
    int n = argc == 4 ? atoi(argv[3]) : 0;
    if (n <= 0 || n > BOARDS_MAX) {
        fprintf(stderr, "usage: fleetsim PORT BASE N (N at most %d)\n", BOARDS_MAX);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max; // one socket per board
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    mosquitto_lib_init();
    struct sim *v = calloc((size_t)n, sizeof(*v));
    struct pollfd *p = calloc((size_t)n, sizeof(*p));
    for (int i = 0; i < n; i++) {
        if (sim_start(&v[i], argv[2], i, atoi(argv[1])) != 0) {
            fprintf(stderr, "fleetsim: board %d cannot connect\n", i);
            return 1;
        }
    }
    for (int ready = 0; ready < n && !stopping;) {
        run_once(v, n, p);
        ready = 0;
        for (int i = 0; i < n; i++) {
            ready += v[i].ready && v[i].outstanding == 0;
        }
    }
    printf("ready\n");
    fflush(stdout);
    while (!stopping) {
        run_once(v, n, p);
    }
    for (int i = 0; i < n; i++) {
        mosquitto_disconnect(v[i].m);    // clean: the broker keeps the "online" status; the
        mosquitto_loop_write(v[i].m, 1); // benchmark's broker is stopped with us
        mosquitto_destroy(v[i].m);
        mqb_engine_deinit(&v[i].e);
    }
    free(v);
    free(p);
    mosquitto_lib_cleanup();
    return 0;
}
