// mqboard's connection to the board: connect, one command at a time with its own id and
// reply subscription, and replies received with a per-silence timeout.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <mqtt_protocol.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

// How long mqboard waits, when it leaves, for what it still has to send to go out.
#define FLUSH_S 5.0

struct msg_node {
    char *topic;
    uint8_t *payload;
    size_t len;
    struct msg_node *next;
};

static int publish_raw(struct session *s, const char *topic, const void *payload, size_t len);

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

static void node_free(struct msg_node *n) {
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
static bool pump(struct session *s, double timeout_s, bool (*done)(struct session *)) {
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

static bool got_suback(struct session *s) {
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
        bool up = pump(s, s->o->timeout, got_connack);
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
        if (src != MOSQ_ERR_SUCCESS || !pump(s, s->o->timeout, got_suback) || !got_suback(s)) {
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

static bool has_msg_or_signal(struct session *s);

int session_pump(struct session *s, double timeout_s) {
    return pump(s, timeout_s, has_msg_or_signal) ? EXIT_OK : EXIT_CONN;
}

void session_close(struct session *s) {
    if (s->mosq == NULL) {
        return;
    }
    if (s->mount_root != NULL && !s->lost) { // at once, not when its lease runs out
        session_send_as(s, "mount", s->mount_id, NULL, (const uint8_t *)"off", 3);
        session_flush(s);
    }
    free(s->mount_root);
    s->mount_root = NULL;
    node_free(s->current);
    s->current = NULL;
    while (s->head != NULL) {
        struct msg_node *n = s->head;
        s->head = n->next;
        node_free(n);
    }
    mosquitto_disconnect(s->mosq);
    mosquitto_loop(s->mosq, 10, 1);
    mosquitto_destroy(s->mosq);
    s->mosq = NULL;
    mosquitto_lib_cleanup();
    keys_free(&s->signer, &s->trust);
}

// A fresh command id, with the deadline by which the board must start it (--expire).
static void new_id(const struct session *s, char *id, size_t cap) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t rnd[8];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t v = (uint64_t)time(NULL) ^ (uint64_t)clock();
        memcpy(rnd, &v, sizeof(rnd));
    }
    size_t i = 0;
    for (; i < sizeof(rnd) && i + 1 < cap; i++) {
        id[i] = alphabet[rnd[i] & 63];
    }
    id[i] = '\0';
    if (s->o->expire > 0 && i + 10 <= cap) {
        snprintf(id + i, cap - i, ".%08x", (uint32_t)((double)time(NULL) + s->o->expire));
    }
}

void session_new_id(const struct session *s, char *id, size_t cap) {
    new_id(s, id, cap);
}

// The board's key is known from a status signed by it, or a status was refused.
static bool trust_settled(const struct session *s, const void *ctx) {
    (void)ctx;
    return s->trust.key_ok || s->trust.refused;
}

int session_begin(struct session *s, const char *cmd) {
    if (s->sub_refused) { // the replies could never arrive (status and log may still work)
        fprintf(s->err, "mqboard: the broker refused the subscription to %s (an ACL?)\n",
                s->reply_topic);
        return EXIT_CONN;
    }
    if (!s->present && strcmp(cmd, "caps") != 0) {
        int code = session_present(s);
        if (code != EXIT_OK) {
            return code;
        }
    }
    if (strcmp(cmd, "caps") != 0 && !s->trust.key_ok && keys_expected(&s->trust)) {
        // A board whose key is recorded here: its signed status first (the command must be
        // signed for its boot), which a clustered broker may deliver late, or (aedes) not for
        // the subscription sent behind CONNECT: subscribing again brings it.
        mosquitto_subscribe(s->mosq, NULL, s->status_topic, 1);
        int code = session_watch(s, s->o->timeout, trust_settled, NULL);
        if (code == EXIT_OK && !s->trust.key_ok) {
            return EXIT_BOARD; // a status not signed by its recorded key (said)
        }
        if (code == EXIT_TIMEOUT) {
            fprintf(s->err,
                    "mqboard: board '%s' has a key recorded here, but no status signed by it "
                    "came within %.1f s\n",
                    s->o->prefix, s->o->timeout);
        }
        if (code != EXIT_OK) {
            return code == RECV_INTERRUPT ? EXIT_INTERRUPTED : code;
        }
    }
    new_id(s, s->id, sizeof(s->id));
    keys_begin(&s->trust);
    s->went_offline = false;
    s->resetting = false; // only an announcement during this command counts (not a stale one)
    snprintf(s->cmd, sizeof(s->cmd), "%s", cmd);
    s->ping_id[0] = '\0';
    s->pong = false;
    return EXIT_OK;
}

int session_publish(struct session *s, const char *topic, const void *payload, size_t len) {
    return session_publish_to(s, &s->trust, topic, payload, len);
}

int session_publish_to(struct session *s, const struct board_trust *bt, const char *topic,
                       const void *payload, size_t len) {
    uint8_t *signed_msg = NULL;
    int k = keys_sign(&s->signer, s->o, s->err, bt, topic, payload, len, &signed_msg, &len);
    if (k < 0) {
        return MOSQ_ERR_AUTH;
    }
    int rc = publish_raw(s, topic, k > 0 ? signed_msg : payload, len);
    free(signed_msg);
    return rc;
}

// Publishes a command message as it is (QoS 1, with the MQTT 5 expiry).
static int publish_raw(struct session *s, const char *topic, const void *payload, size_t len) {
    int rc;
    if (s->mqtt311 || s->o->expire <= 0) {
        rc = mosquitto_publish(s->mosq, &s->last_mid, topic, (int)len, payload, 1, false);
        s->last_unacked = rc == MOSQ_ERR_SUCCESS;
        return rc;
    }
    // MQTT 5: the broker drops the command once --expire has passed (the deadline in its id
    // says the same to the board, on any broker).
    mosquitto_property *p = NULL;
    mosquitto_property_add_int32(&p, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                 (uint32_t)(s->o->expire < 4e9 ? s->o->expire : 4e9));
    rc = mosquitto_publish_v5(s->mosq, &s->last_mid, topic, (int)len, payload, 1, false, p);
    s->last_unacked = rc == MOSQ_ERR_SUCCESS;
    mosquitto_property_free_all(&p);
    return rc;
}

static int publish(struct session *s, const char *topic, const uint8_t *payload, size_t len) {
    int rc = session_publish(s, topic, payload, len);
    if (rc == MOSQ_ERR_AUTH) {
        return EXIT_BOARD; // no key to sign with (said)
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(s->err, "mqboard: cannot send to the broker: %s\n", mosquitto_strerror(rc));
        return EXIT_CONN;
    }
    if (s->o->verbose > 1) {
        fprintf(stderr, "mqboard: -> %s (%zu bytes)\n", topic, len);
    }
    return EXIT_OK;
}

int session_send(struct session *s, const char *tail, uint16_t seq, bool last, const uint8_t *data,
                 size_t len) {
    for (const char *c = tail; c != NULL && *c != '\0'; c++) {
        if (*c == '+' || *c == '#' || (unsigned char)*c < 0x20) {
            fprintf(s->err, "mqboard: a board path cannot contain '+', '#' or control "
                            "characters (MQTT topics carry the path)\n");
            return EXIT_USAGE;
        }
    }
    char topic[MQB_TOPIC_MAX];
    if (mqb_topic_cmd(topic, sizeof(topic), s->o->prefix, s->cmd, s->id, tail) != MQB_OK) {
        fprintf(s->err, "mqboard: topic too long (path over %d bytes?)\n", MQB_PATH_MAX);
        return EXIT_USAGE;
    }
    uint8_t *payload = malloc(len + MQB_HDR_LEN);
    mqb_hdr_encode(payload, seq, last);
    if (len > 0) {
        memcpy(payload + MQB_HDR_LEN, data, len);
    }
    int code = publish(s, topic, payload, len + MQB_HDR_LEN);
    free(payload);
    return code;
}

int session_send_cmd(struct session *s, const char *cmd, const char *tail, const uint8_t *data,
                     size_t len) {
    char saved[sizeof(s->cmd)];
    memcpy(saved, s->cmd, sizeof(saved));
    snprintf(s->cmd, sizeof(s->cmd), "%s", cmd);
    int code = session_send(s, tail, MQB_SEQ_MASK, true, data, len);
    memcpy(s->cmd, saved, sizeof(saved));
    return code;
}

int session_send_as(struct session *s, const char *cmd, const char *id, const char *tail,
                    const uint8_t *data, size_t len) {
    char saved[sizeof(s->id)];
    memcpy(saved, s->id, sizeof(saved));
    snprintf(s->id, sizeof(s->id), "%s", id);
    int code = session_send_cmd(s, cmd, tail, data, len);
    memcpy(s->id, saved, sizeof(saved));
    return code;
}

int session_send_aside(struct session *s, const char *cmd, const char *tail) {
    char topic[MQB_TOPIC_MAX], id[ID_LEN];
    uint8_t hdr[MQB_HDR_LEN];
    new_id(s, id, sizeof(id));
    mqb_hdr_encode(hdr, 0, true);
    if (mqb_topic_cmd(topic, sizeof(topic), s->o->prefix, cmd, id, tail) != MQB_OK) {
        return EXIT_USAGE;
    }
    return publish(s, topic, hdr, sizeof(hdr));
}

// session_watch's wake-up: a message or Ctrl-C (not a lease due: the watch renews none).
static bool has_msg_or_ctrl_c(struct session *s) {
    return s->head != NULL || tool_interrupted;
}

static bool has_msg_or_signal(struct session *s) {
    double now = tool_now();
    return s->head != NULL || tool_interrupted || (s->interrupt_at > 0 && now >= s->interrupt_at) ||
           (s->lease_at > 0 && now >= s->lease_at) ||
           (s->mount_lease_at > 0 && now >= s->mount_lease_at);
}

// Asks the board whether it is still working on the current command (running, under an id of
// its own); used while a long eval keeps the board silent. Only a board that answers other
// commands while an eval runs (mqrepld) says yes; an original board stays silent, as it did.
// With a lease ("lease S"), the board interrupts the eval when no renewal comes for S s.
static void send_ping(struct session *s, bool lease) {
    char topic[MQB_TOPIC_MAX];
    uint8_t msg[MQB_HDR_LEN + 16];
    new_id(s, s->ping_id, sizeof(s->ping_id));
    s->pong = false;
    mqb_hdr_encode(msg, 0, true);
    size_t len = MQB_HDR_LEN;
    if (lease) {
        len += (size_t)snprintf((char *)msg + MQB_HDR_LEN, 16, "lease %.0f", s->o->lease);
    }
    mqb_topic_cmd(topic, sizeof(topic), s->o->prefix, "running", s->ping_id, s->id);
    if (s->o->verbose > 1) {
        fprintf(stderr, "mqboard: -> %s (is the board still on it?)\n", topic);
    }
    session_publish(s, topic, msg, len);
}

// Renews the mount's lease when it is due (the board unmounts when renewals stop).
static void renew_mount(struct session *s) {
    if (s->mount_root == NULL || tool_now() < s->mount_lease_at) {
        return;
    }
    char topic[MQB_TOPIC_MAX], id[ID_LEN];
    uint8_t msg[MQB_HDR_LEN + 16];
    new_id(s, id, sizeof(id));
    mqb_hdr_encode(msg, 0, true);
    int n = snprintf((char *)msg + MQB_HDR_LEN, 16, "lease %.0f", s->o->lease);
    mqb_topic_cmd(topic, sizeof(topic), s->o->prefix, "running", id, s->mount_id);
    session_publish(s, topic, msg, (size_t)(MQB_HDR_LEN + n));
    s->mount_lease_at = tool_now() + s->o->lease / 3.0;
}

// A question of the board's (reply/ask/<id>) to us: keyboard input for our eval, or the
// mount's files. Questions to other ids are someone else's.
static void take_ask(struct session *s, const struct mqb_topic *t, const struct msg_node *n) {
    char to[MQB_ID_MAX + 1];
    snprintf(to, sizeof(to), "%.*s", (int)t->id.len, t->id.ptr);
    size_t len = n->len;
    if ((strcmp(to, s->id) == 0 || (s->mount_root != NULL && strcmp(to, s->mount_id) == 0)) &&
        keys_check_reply(&s->trust, s->err, s->cmd, n->topic, t, n->payload, &len, false)) {
        ask_serve(s, to, n->payload, len);
    }
}

bool session_idle(struct session *s, double timeout_s) {
    struct mqb_topic t;
    renew_mount(s);
    if (!pump(s, timeout_s, has_msg_or_signal)) {
        return false;
    }
    while (s->head != NULL) {
        struct msg_node *n = s->head;
        s->head = n->next;
        s->tail = s->head == NULL ? NULL : s->tail;
        if (mqb_topic_parse(s->o->prefix, n->topic, strlen(n->topic), &t) == MQB_OK &&
            t.kind == MQB_TOPIC_REPLY_ASK) {
            take_ask(s, &t, n);
        }
        node_free(n);
    }
    renew_mount(s);
    return true;
}

void session_lease(struct session *s, bool on) {
    // Only our agent knows leases; an original board (no status) would answer each with an
    // error once its eval is done.
    s->lease_at = on && s->online == 1 ? tool_now() : 0;
}

// Says what the board is busy with (a reply/busy notice for our command).
static void take_busy(struct session *s, const struct msg_node *n) {
    cJSON *j = cJSON_ParseWithLength((const char *)n->payload, n->len);
    const cJSON *what = cJSON_GetObjectItemCaseSensitive(j, "what");
    const cJSON *secs = cJSON_GetObjectItemCaseSensitive(j, "seconds");
    const cJSON *queued = cJSON_GetObjectItemCaseSensitive(j, "queued");
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return;
    }
    char *w = tool_escape(cJSON_IsString(what) ? what->valuestring : "");
    char *nl = strchr(w, '\\'); // the first line of the running code is enough
    if (nl != NULL && nl[1] == 'n') {
        *nl = '\0';
    }
    fprintf(s->err, "mqboard: board '%s' is busy with '%s' (running for %.1f s", s->o->prefix, w,
            cJSON_IsNumber(secs) && secs->valuedouble >= 0 ? secs->valuedouble : 0);
    if (cJSON_IsNumber(queued) && queued->valuedouble >= 1) {
        fprintf(s->err, ", %.0f more waiting", queued->valuedouble);
    }
    fprintf(s->err, "); %s\n",
            s->o->nonblock ? "not waiting (--nonblock)" : "waiting (--nonblock fails instead)");
    fflush(s->err);
    free(w);
    cJSON_Delete(s->busy);
    s->busy = j;
}

static bool id_is(const struct mqb_slice *id, const char *want) {
    return want[0] != '\0' && id->len == strlen(want) && memcmp(id->ptr, want, id->len) == 0;
}

// Takes the next queued reply of the current command (dropping others); NULL when none.
static struct msg_node *next_reply(struct session *s, struct mqb_topic *t) {
    while (s->head != NULL) {
        struct msg_node *n = s->head;
        s->head = n->next;
        if (s->head == NULL) {
            s->tail = NULL;
        }
        if (mqb_topic_parse(s->o->prefix, n->topic, strlen(n->topic), t) == MQB_OK &&
            t->kind != MQB_TOPIC_CMD) {
            bool ours = id_is(&t->id, s->id), ping = id_is(&t->id, s->ping_id);
            if ((ours || ping) && t->kind != MQB_TOPIC_REPLY_ASK &&
                !keys_check_reply(&s->trust, s->err, s->cmd, n->topic, t, n->payload, &n->len,
                                  ours)) {
                // dropped: not signed by the board
            } else if (t->kind == MQB_TOPIC_REPLY_ASK) {
                take_ask(s, t, n);
            } else if (id_is(&t->id, s->id) && t->kind == MQB_TOPIC_REPLY_RESET) {
                if (!s->resetting) { // our eval asked for a reset: the boot that ends
                    snprintf(s->reset_from, sizeof(s->reset_from), "%s", s->boot_id);
                }
                s->resetting = true;
            } else if (id_is(&t->id, s->id) && t->kind == MQB_TOPIC_REPLY_BUSY) {
                take_busy(s, n);
                s->busy_now = true;
            } else if (id_is(&t->id, s->id)) {
                s->present = true;
                return n;
            } else if (id_is(&t->id, s->ping_id)) {
                // "1" after the 2-byte header: the board is still on it.
                s->pong = t->kind == MQB_TOPIC_REPLY_OUT && n->len == MQB_HDR_LEN + 1 &&
                          n->payload[MQB_HDR_LEN] == '1';
                s->pong_at = s->pong ? tool_now() : s->pong_at;
                if (s->o->verbose > 1) {
                    fprintf(stderr, "mqboard: <- %s\n", s->pong ? "still on it" : "not on it");
                }
            }
        }
        node_free(n); // a reply of another command
    }
    return NULL;
}

static int board_back(struct session *s) {
    bool eval = strcmp(s->cmd, "eval") == 0 && s->user_code;
    int code = session_reset_wait(s);
    if (code == EXIT_OK && eval) {
        return RECV_RESET;
    }
    if (code == EXIT_OK) {
        fprintf(s->err, "mqboard: board '%s' reset during the command (it is back)\n",
                s->o->prefix);
        return EXIT_TIMEOUT;
    }
    return code;
}

int session_recv(struct session *s, double timeout_s, struct reply *r) {
    node_free(s->current);
    s->current = NULL;
    double silence = timeout_s < 0 ? s->o->timeout : timeout_s;
    double since = tool_now(), deadline = since + silence;
    struct mqb_topic t;
    struct msg_node *n;
    // Non-blocking poll first, so that a sender sees replies between its messages.
    mosquitto_loop(s->mosq, 0, 1);
    while ((n = next_reply(s, &t)) == NULL) {
        if (s->probing && s->online != s->probe_was) {
            return EXIT_TIMEOUT; // the presence probe: the status said it first
        }
        if (s->went_offline && timeout_s != 0 && s->resetting) {
            // It said it resets (asked by the code it ran, e.g. machine.soft_reset()): what
            // ran is over; wait until it is back so that the next command finds it.
            s->went_offline = false;
            return board_back(s);
        }
        if (s->went_offline && timeout_s != 0) { // its last will: the agent died
            s->went_offline = false;
            fprintf(s->err, "mqboard: board '%s' went offline while mqboard waited for it\n",
                    s->o->prefix);
            return EXIT_TIMEOUT;
        }
        if (s->busy_now && s->o->nonblock) {
            s->busy_now = false;
            return RECV_BUSY;
        }
        s->busy_now = false;
        if (timeout_s == 0) {
            return EXIT_TIMEOUT; // a poll leaves a pending interrupt to the next wait
        }
        if (tool_interrupted || (s->interrupt_at > 0 && tool_now() >= s->interrupt_at)) {
            s->by_user = tool_interrupted;
            tool_interrupted = 0;
            s->interrupt_at = 0;
            return RECV_INTERRUPT;
        }
        double now = tool_now();
        renew_mount(s);
        if (s->lease_at > 0 && now >= s->lease_at) {
            send_ping(s, true); // "still waiting": renews the eval's lease on the board
            s->lease_at = now + s->o->lease / 3.0;
        }
        double left = deadline - now;
        if (left <= 0 && s->ping_on_silence && s->pong_at > now - silence) {
            deadline = s->pong_at + silence; // silent, but it said it is still on it
            continue;
        }
        if (left <= 0 && s->ping_on_silence && (s->ping_id[0] == '\0' || s->pong)) {
            send_ping(s, false); // silent, but was it alive? ask, and give it another period
            deadline = now + silence;
            continue;
        }
        if (left <= 0) {
            fprintf(s->err,
                    "mqboard: no answer from board '%s' for %.1f s (is its agent running, and "
                    "is the prefix right? -T sets the timeout)\n",
                    s->o->prefix, now - since);
            return EXIT_TIMEOUT;
        }
        if (s->lease_at > 0 && s->lease_at - now < left) {
            left = s->lease_at - now > 0 ? s->lease_at - now : 0.001;
        }
        if (s->mount_lease_at > 0 && s->mount_lease_at - now < left) {
            left = s->mount_lease_at - now > 0 ? s->mount_lease_at - now : 0.001;
        }
        if (!pump(s, left, has_msg_or_signal)) {
            fprintf(s->err, "mqboard: lost the connection to the broker\n");
            return EXIT_CONN;
        }
    }
    memset(r, 0, sizeof(*r));
    r->is_err = t.kind == MQB_TOPIC_REPLY_ERR;
    r->data = n->payload;
    r->len = n->len;
    s->current = n;
    if (!r->is_err) {
        if (mqb_hdr_decode(n->payload, n->len, &r->hdr) != MQB_OK) {
            fprintf(s->err, "mqboard: the board sent a reply without a header\n");
            return EXIT_BOARD;
        }
        r->data += MQB_HDR_LEN;
        r->len -= MQB_HDR_LEN;
    }
    return EXIT_OK;
}

bool session_take_any(struct session *s, const char **topic, struct reply *r) {
    node_free(s->current);
    s->current = NULL;
    struct msg_node *n = s->head;
    if (n == NULL) {
        return false;
    }
    s->head = n->next;
    s->tail = s->head == NULL ? NULL : s->tail;
    memset(r, 0, sizeof(*r));
    r->data = n->payload;
    r->len = n->len;
    *topic = n->topic;
    s->current = n;
    return true;
}

int session_subscribe(struct session *s, const char *topic) {
    return session_subscribe_qos(s, topic, 1);
}

int session_subscribe_qos(struct session *s, const char *topic, int qos) {
    s->subacked_target = s->subacked + 1;
    int rc = mosquitto_subscribe(s->mosq, NULL, topic, qos);
    if (rc != MOSQ_ERR_SUCCESS || !pump(s, s->o->timeout, got_suback) || !got_suback(s)) {
        fprintf(s->err, "mqboard: cannot subscribe to %s\n", topic);
        return EXIT_CONN;
    }
    return EXIT_OK;
}

int session_recv_raw(struct session *s, const char *topic, double timeout_s, struct reply *r) {
    node_free(s->current);
    s->current = NULL;
    double deadline = tool_now() + timeout_s;
    for (;;) {
        while (s->head != NULL) {
            struct msg_node *n = s->head;
            s->head = n->next;
            if (s->head == NULL) {
                s->tail = NULL;
            }
            if (strcmp(n->topic, topic) == 0) {
                memset(r, 0, sizeof(*r));
                r->data = n->payload;
                r->len = n->len;
                s->current = n;
                return EXIT_OK;
            }
            node_free(n);
        }
        if (tool_interrupted) {
            return RECV_INTERRUPT;
        }
        double left = timeout_s < 0 ? 1.0 : deadline - tool_now();
        if (left <= 0) {
            return EXIT_TIMEOUT;
        }
        if (!pump(s, left, has_msg_or_signal)) {
            fprintf(s->err, "mqboard: lost the connection to the broker\n");
            return EXIT_CONN;
        }
    }
}

void session_flush(struct session *s) {
    // What is still queued goes out before mqboard leaves (a put's abort, an interrupt, a
    // --no-follow eval), and the broker has acknowledged the last command message: written
    // to the socket is not enough (a broker may drop what a client sent just before it went).
    // Up to FLUSH_S, even when the broker is slow to take a full socket buffer.
    double end = tool_now() + FLUSH_S;
    while (s->mosq != NULL && !s->lost && (mosquitto_want_write(s->mosq) || s->last_unacked) &&
           tool_now() < end) {
        if (mosquitto_loop(s->mosq, 10, 1) != MOSQ_ERR_SUCCESS) {
            break;
        }
    }
}

void session_end(struct session *s) {
    s->id[0] = '\0';
    s->stdin_want = false;
    s->ping_id[0] = '\0';
    s->ping_on_silence = false;
    s->interrupt_at = 0;
    s->lease_at = 0;
}

int session_watch(struct session *s, double timeout_s,
                  bool (*done)(const struct session *, const void *), const void *ctx) {
    double end = tool_now() + timeout_s;
    while (!done(s, ctx)) {
        double left = end - tool_now();
        if (left <= 0) {
            return EXIT_TIMEOUT;
        }
        if (tool_interrupted) {
            return RECV_INTERRUPT;
        }
        if (!pump(s, left, has_msg_or_ctrl_c)) {
            fprintf(s->err, "mqboard: lost the connection to the broker\n");
            return EXIT_CONN;
        }
        while (s->head != NULL) { // only the status matters here (take_status saw it)
            struct msg_node *n = s->head;
            s->head = n->next;
            s->tail = s->head == NULL ? NULL : s->tail;
            node_free(n);
        }
    }
    return EXIT_OK;
}
