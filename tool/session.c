// mqboard's session with the board over its connection (connection.c): one command at a time
// with its own id, signed when the board obeys keys, replies received with a per-silence
// timeout, the leases of evals and mounts, the board's questions and busy notices.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "connection.h"
#include "tool.h"

// How long mqboard waits, when it leaves, for what it still has to send to go out.
#define FLUSH_S 5.0

static int publish_raw(struct session *s, const char *topic, const void *payload, size_t len);

static bool has_msg_or_signal(struct session *s);

int session_pump(struct session *s, double timeout_s) {
    return conn_pump(s, timeout_s, has_msg_or_signal) ? EXIT_OK : EXIT_CONN;
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
    conn_node_free(s->current);
    s->current = NULL;
    while (s->head != NULL) {
        struct msg_node *n = s->head;
        s->head = n->next;
        conn_node_free(n);
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
    if (!conn_pump(s, timeout_s, has_msg_or_signal)) {
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
        conn_node_free(n);
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
        conn_node_free(n); // a reply of another command
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
    conn_node_free(s->current);
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
        if (!conn_pump(s, left, has_msg_or_signal)) {
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
    conn_node_free(s->current);
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
    if (rc != MOSQ_ERR_SUCCESS || !conn_pump(s, s->o->timeout, conn_got_suback) ||
        !conn_got_suback(s)) {
        fprintf(s->err, "mqboard: cannot subscribe to %s\n", topic);
        return EXIT_CONN;
    }
    return EXIT_OK;
}

int session_recv_raw(struct session *s, const char *topic, double timeout_s, struct reply *r) {
    conn_node_free(s->current);
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
            conn_node_free(n);
        }
        if (tool_interrupted) {
            return RECV_INTERRUPT;
        }
        double left = timeout_s < 0 ? 1.0 : deadline - tool_now();
        if (left <= 0) {
            return EXIT_TIMEOUT;
        }
        if (!conn_pump(s, left, has_msg_or_signal)) {
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
        if (!conn_pump(s, left, has_msg_or_ctrl_c)) {
            fprintf(s->err, "mqboard: lost the connection to the broker\n");
            return EXIT_CONN;
        }
        while (s->head != NULL) { // only the status matters here (take_status saw it)
            struct msg_node *n = s->head;
            s->head = n->next;
            s->tail = s->head == NULL ? NULL : s->tail;
            conn_node_free(n);
        }
    }
    return EXIT_OK;
}
