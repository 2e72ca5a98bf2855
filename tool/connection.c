// mqboard's MQTT connection: libmosquitto's client and callbacks, the network loop (with
// standard input while the board waits for keyboard input), connecting with the
// subscriptions sent right behind CONNECT (MQTT 5, else 3.1.1), and the queue of messages
// received (untrusted: the session reads them). The session (session.c) sits on it.
#define _GNU_SOURCE
#include <mqtt_protocol.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "connection.h"
#include "tool.h"

double tool_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    ((struct session *)obj)->connack = rc;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    if (rc != 0) {
        ((struct session *)obj)->lost = true;
    }
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
    (void)mosq;
    struct session *s = obj;
    s->last_unacked = s->last_unacked && mid != s->last_mid;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *qos) {
    (void)mosq;
    (void)mid;
    struct session *s = obj;
    for (int i = 0; i < n; i++) {
        s->sub_refused |= qos[i] >= 0x80; // the broker said no (an ACL)
    }
    s->subacked++;
}

// The board's retained status (untrusted: anyone may publish it): only well-formed fields
// count (parse.c).
static void take_status(struct session *s, const char *payload, size_t len) {
    struct board_status st;
    parse_status((const uint8_t *)payload, len, &st);
    keys_settle(&s->signer, &s->trust);
    if (!keys_take_status(&s->trust, s->err, (const uint8_t *)payload, len, &st)) {
        return; // not the board's own (signed by the key recorded for it): ignored
    }
    s->went_offline |= s->online == 1 && st.online == 0;
    if (st.resetting && !s->resetting) { // it announced a reset: the boot that ends
        snprintf(s->reset_from, sizeof(s->reset_from), "%s", st.boot_id);
    }
    s->resetting = st.resetting;
    s->online = st.online;
    s->status_since = st.since;
    snprintf(s->boot_id, sizeof(s->boot_id), "%s", st.boot_id);
    s->slot = st.slot;
    s->pending = st.pending;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m) {
    (void)mosq;
    struct session *s = obj;
    if (strcmp(m->topic, s->status_topic) == 0) {
        take_status(s, m->payload, (size_t)m->payloadlen);
    }
    struct msg_node *n = calloc(1, sizeof(*n));
    n->topic = strdup(m->topic);
    n->len = (size_t)m->payloadlen;
    n->payload = malloc(n->len + 1);
    if (n->len > 0) {
        memcpy(n->payload, m->payload, n->len);
    }
    n->payload[n->len] = 0;
    if (s->tail != NULL) {
        s->tail->next = n;
    } else {
        s->head = n;
    }
    s->tail = n;
}

void conn_node_free(struct msg_node *n) {
    if (n != NULL) {
        free(n->topic);
        free(n->payload);
        free(n);
    }
}

// One round of network I/O of at most ms; while the board waits for keyboard input, standard
// input is watched too.
static int io_once(struct session *s, int ms) {
    int sock = mosquitto_socket(s->mosq);
    if (!s->stdin_want || sock < 0) {
        return mosquitto_loop(s->mosq, ms, 1);
    }
    struct pollfd p[2] = {
        {.fd = sock, .events = POLLIN | (mosquitto_want_write(s->mosq) ? POLLOUT : 0)},
        {.fd = STDIN_FILENO, .events = POLLIN},
    };
    if (poll(p, 2, ms) < 0) {
        return errno == EINTR ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ERRNO;
    }
    if (p[1].revents != 0) {
        ask_stdin_ready(s);
    }
    int rc = MOSQ_ERR_SUCCESS;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        rc = mosquitto_loop_read(s->mosq, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(s->mosq)) {
        rc = mosquitto_loop_write(s->mosq, 1);
    }
    return rc == MOSQ_ERR_SUCCESS ? mosquitto_loop_misc(s->mosq) : rc;
}

// Runs the network for at most timeout_s seconds or until done(s) holds. Returns false when
// the connection is gone.
bool conn_pump(struct session *s, double timeout_s, bool (*done)(struct session *)) {
    double end = tool_now() + timeout_s;
    while (!done(s)) {
        double left = end - tool_now();
        if (left <= 0) {
            return true;
        }
        int rc = io_once(s, left > 0.1 ? 100 : (int)(left * 1000) + 1);
        if (rc != MOSQ_ERR_SUCCESS || s->lost) {
            s->lost = true;
            return false;
        }
    }
    return true;
}

static bool got_connack(struct session *s) {
    return s->connack >= 0;
}

bool conn_got_suback(struct session *s) {
    return s->subacked >= s->subacked_target;
}

static int setup_client(struct session *s) {
    const struct tool_opts *o = s->o;
    mosquitto_lib_init();
    s->mosq = mosquitto_new(NULL, true, s);
    if (s->mosq == NULL) {
        fprintf(s->err, "mqboard: cannot create an MQTT client\n");
        return EXIT_CONN;
    }
    mosquitto_int_option(s->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         s->mqtt311 ? MQTT_PROTOCOL_V311 : MQTT_PROTOCOL_V5);
    mosquitto_connect_callback_set(s->mosq, on_connect);
    mosquitto_disconnect_callback_set(s->mosq, on_disconnect);
    mosquitto_subscribe_callback_set(s->mosq, on_subscribe);
    mosquitto_message_callback_set(s->mosq, on_message);
    mosquitto_publish_callback_set(s->mosq, on_publish);
    if (o->username != NULL) {
        mosquitto_username_pw_set(s->mosq, o->username, o->password);
    }
    int rc = MOSQ_ERR_SUCCESS;
    if (o->psk != NULL) {
        rc = mosquitto_tls_psk_set(s->mosq, o->psk, o->psk_identity, NULL);
    } else if (o->tls || o->cafile != NULL) {
        rc = mosquitto_tls_set(s->mosq, o->cafile, o->cafile ? NULL : "/etc/ssl/certs", NULL, NULL,
                               NULL);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(s->err, "mqboard: TLS set-up failed: %s\n", mosquitto_strerror(rc));
        return EXIT_CONN;
    }
    return EXIT_OK;
}

// The subscriptions of one board: its status first, then its replies (session_connect).
static int subscribe_board(struct session *s, const void *unused) {
    (void)unused;
    s->subacked_target = s->subacked + 2;
    int rc = mosquitto_subscribe(s->mosq, NULL, s->status_topic, 1);
    return rc != MOSQ_ERR_SUCCESS ? rc : mosquitto_subscribe(s->mosq, NULL, s->reply_topic, 1);
}

struct many {
    const char *const *prefixes;
    int n;
};

// Every board's status first, then every board's replies, in batches: a broker answers a
// SUBSCRIBE with its SUBACK and then the retained messages, so by the last SUBACK the
// statuses of all earlier batches are in (session_connect_many).
static int subscribe_many(struct session *s, const void *ctx) {
    const struct many *m = ctx;
    enum { BATCH = 128 };
    static const char *const kinds[] = {"status", "reply/#"};
    char *topics[BATCH];
    int rc = MOSQ_ERR_SUCCESS;
    s->subacked_target = s->subacked;
    for (int kind = 0; kind < 2; kind++) {
        for (int i = 0; rc == MOSQ_ERR_SUCCESS && i < m->n; i += BATCH) {
            int k = 0;
            for (int j = i; j < m->n && j < i + BATCH; j++) {
                k += asprintf(&topics[k], "%s/mqb/%s", m->prefixes[j], kinds[kind]) >= 0;
            }
            // Statuses at QoS 0: thousands of retained ones are never dropped by the broker's
            // queue limit for acknowledged delivery (mosquitto: 1000 by default).
            rc = mosquitto_subscribe_multiple(s->mosq, NULL, k, topics, kind == 0 ? 0 : 1, 0, NULL);
            s->subacked_target += rc == MOSQ_ERR_SUCCESS;
            for (int j = 0; j < k; j++) {
                free(topics[j]);
            }
        }
    }
    return rc;
}

// A CONNACK that says the broker does not take MQTT 5 (3.1.1's "unacceptable protocol
// version", 5's "unsupported protocol version" or "protocol error").
static bool refuses_v5(int connack) {
    return connack == 1 || connack == 130 || connack == 132;
}

// Connects and subscribes, the subscriptions sent right behind CONNECT (MQTT allows it), so
// CONNACK and SUBACKs share one round trip: on a distant broker a command costs the
// connection and its own round trip, nothing more. MQTT 5 first (commands then carry a
// message expiry); a broker that refuses it is asked again with 3.1.1.
static int connect_subscribed(struct tool *t, int (*subscribe)(struct session *, const void *),
                              const void *ctx) {
    struct session *s = &t->session;
    s->o = &t->opts;
    s->err = t->err;
    for (;;) {
        s->connack = -1;
        s->subacked = 0;
        int code = setup_client(s);
        if (code != EXIT_OK) {
            return code;
        }
        int rc = mosquitto_connect(s->mosq, s->o->server, s->o->port, 30);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(s->err, "mqboard: cannot connect to the broker at %s:%d: %s\n", s->o->server,
                    s->o->port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
            return EXIT_CONN;
        }
        int src = subscribe(s, ctx);
        bool up = conn_pump(s, s->o->timeout, got_connack);
        // A broker that does not take MQTT 5 refuses it, or (aedes) just hangs up.
        if (!s->mqtt311 && (refuses_v5(s->connack) || (!up && s->connack < 0 && s->lost))) {
            mosquitto_destroy(s->mosq); // again, in MQTT 3.1.1
            mosquitto_lib_cleanup();
            s->mosq = NULL;
            s->mqtt311 = true;
            s->lost = false;
            continue;
        }
        if (!up || s->connack < 0) {
            fprintf(s->err, "mqboard: no answer from the broker at %s:%d (TLS or PSK settings?)\n",
                    s->o->server, s->o->port);
            return EXIT_CONN;
        }
        if (s->connack != 0) {
            fprintf(s->err, "mqboard: the broker refused the connection: %s\n",
                    mosquitto_connack_string(s->connack));
            return EXIT_CONN;
        }
        if (src != MOSQ_ERR_SUCCESS || !conn_pump(s, s->o->timeout, conn_got_suback) ||
            !conn_got_suback(s)) {
            fprintf(s->err, "mqboard: cannot subscribe to the board's replies: %s\n",
                    mosquitto_strerror(src != MOSQ_ERR_SUCCESS ? src : MOSQ_ERR_CONN_LOST));
            return EXIT_CONN;
        }
        t->connected = true;
        return EXIT_OK;
    }
}

int session_connect(struct tool *t) {
    struct session *s = &t->session;
    if (t->connected) {
        return EXIT_OK;
    }
    // One subscription for all replies of this board: a command then costs no extra round
    // trip, and replies are told apart by their id. The status subscription goes first: its
    // retained message is queued before the second SUBACK, so once that arrives the tool
    // knows whether the board is online, offline or has never said.
    snprintf(s->reply_topic, sizeof(s->reply_topic), "%s/mqb/reply/#", t->opts.prefix);
    snprintf(s->status_topic, sizeof(s->status_topic), "%s/mqb/status", t->opts.prefix);
    keys_trust_init(&s->trust, t->opts.prefix);
    keys_prepare(&s->signer, &t->opts, &s->trust);
    s->online = -1;
    double t0 = tool_now();
    int code = connect_subscribed(t, subscribe_board, NULL);
    s->broker_rtt = (tool_now() - t0) / 2; // connect and subscribe: ~two round trips
    return code;
}

int session_connect_many(struct tool *t, const char *const *prefixes, int n) {
    struct many m = {prefixes, n};
    return connect_subscribed(t, subscribe_many, &m);
}
