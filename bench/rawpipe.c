// rawpipe: the baseline for the benchmarks: what the broker itself does for the same work,
// with libmosquitto clients and nothing of ours in the way.
//
//   rawpipe -p PORT stream BYTES CHUNK WINDOW   a publisher streams BYTES in CHUNK-byte QoS 1
//                                               messages to a subscriber, which acknowledges
//                                               every WINDOW/2 messages through the broker (the
//                                               same flow control as xput/xget); prints MB/s
//   rawpipe -p PORT rtt COUNT                   request -> echo client -> response, COUNT times
//                                               at QoS 1; prints median and p99 in ms
#define _GNU_SOURCE
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    long received, acked, bytes;
    int subscribed;
    struct mosquitto *echo; // the peer that answers
    long window;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *q) {
    (void)m, (void)mid, (void)n, (void)q;
    struct shared *s = obj;
    pthread_mutex_lock(&s->mu);
    s->subscribed++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

// The receiving side: counts data and acknowledges every window/2 messages; for rtt, echoes.
static void on_peer_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    struct shared *s = obj;
    if (strcmp(msg->topic, "bench/rtt/req") == 0) {
        mosquitto_publish(m, NULL, "bench/rtt/rsp", msg->payloadlen, msg->payload, 1, false);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->received++;
    s->bytes += msg->payloadlen;
    long r = s->received;
    pthread_mutex_unlock(&s->mu);
    if (r % (s->window / 2) == 0) {
        char ack[24];
        int n = snprintf(ack, sizeof(ack), "%ld", r);
        mosquitto_publish(m, NULL, "bench/ack", n, ack, 1, false);
    }
}

// The sending side: acknowledgements and echo responses.
static void on_main_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m;
    struct shared *s = obj;
    pthread_mutex_lock(&s->mu);
    if (strcmp(msg->topic, "bench/ack") == 0) {
        long a = strtol(msg->payload, NULL, 10);
        s->acked = a > s->acked ? a : s->acked;
    } else {
        s->received++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static struct mosquitto *client(int port, struct shared *s,
                                void (*on_msg)(struct mosquitto *, void *,
                                               const struct mosquitto_message *),
                                const char *topic) {
    struct mosquitto *m = mosquitto_new(NULL, true, s);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_message_callback_set(m, on_msg);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    if (mosquitto_connect(m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "rawpipe: cannot connect to 127.0.0.1:%d\n", port);
        exit(1);
    }
    mosquitto_loop_start(m);
    mosquitto_subscribe(m, NULL, topic, 1);
    return m;
}

static void wait_subscribed(struct shared *s, int n) {
    pthread_mutex_lock(&s->mu);
    while (s->subscribed < n) {
        pthread_cond_wait(&s->cond, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
}

static void teardown(struct mosquitto *a, struct mosquitto *b) {
    struct mosquitto *both[] = {a, b};
    for (int i = 0; i < 2; i++) {
        mosquitto_disconnect(both[i]);
        mosquitto_loop_stop(both[i], false);
        mosquitto_destroy(both[i]);
    }
}

static int stream(int port, long bytes, long chunk, long window) {
    struct shared s = {
        .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .window = window};
    struct mosquitto *peer = client(port, &s, on_peer_message, "bench/data");
    struct mosquitto *main = client(port, &s, on_main_message, "bench/ack");
    wait_subscribed(&s, 2);
    long total = (bytes + chunk - 1) / chunk;
    char *buf = malloc((size_t)chunk);
    memset(buf, 0xA5, (size_t)chunk);
    double t0 = now_s();
    for (long i = 0; i < total; i++) {
        pthread_mutex_lock(&s.mu);
        while (i >= s.acked + window) {
            pthread_cond_wait(&s.cond, &s.mu);
        }
        pthread_mutex_unlock(&s.mu);
        long n = i + 1 == total ? bytes - i * chunk : chunk;
        mosquitto_publish(main, NULL, "bench/data", (int)n, buf, 1, false);
    }
    for (;;) {
        pthread_mutex_lock(&s.mu);
        long got = s.bytes;
        pthread_mutex_unlock(&s.mu);
        if (got >= bytes) {
            break;
        }
        usleep(100);
    }
    double secs = now_s() - t0;
    printf("%.3f MB/s %.4f s\n", (double)bytes / 1e6 / secs, secs);
    teardown(main, peer);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int rtt(int port, long count) {
    struct shared s = {
        .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .window = 2};
    struct mosquitto *peer = client(port, &s, on_peer_message, "bench/rtt/req");
    struct mosquitto *main = client(port, &s, on_main_message, "bench/rtt/rsp");
    wait_subscribed(&s, 2);
    double *t = malloc((size_t)count * sizeof(double));
    for (long i = 0; i < count; i++) {
        double t0 = now_s();
        mosquitto_publish(main, NULL, "bench/rtt/req", 3, "1+1", 1, false);
        pthread_mutex_lock(&s.mu);
        while (s.received <= i) {
            pthread_cond_wait(&s.cond, &s.mu);
        }
        pthread_mutex_unlock(&s.mu);
        t[i] = (now_s() - t0) * 1000;
    }
    qsort(t, (size_t)count, sizeof(double), cmp);
    printf("median %.3f ms p99 %.3f ms\n", t[count / 2], t[(count * 99) / 100]);
    teardown(main, peer);
    free(t);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "-p") == 0) {
        int port = atoi(argv[2]);
        mosquitto_lib_init();
        if (argc == 7 && strcmp(argv[3], "stream") == 0) {
            return stream(port, atol(argv[4]), atol(argv[5]), atol(argv[6]));
        }
        if (argc == 5 && strcmp(argv[3], "rtt") == 0) {
            return rtt(port, atol(argv[4]));
        }
    }
    fprintf(stderr, "usage: rawpipe -p PORT stream BYTES CHUNK WINDOW | rtt COUNT\n");
    return 2;
}
