// eval, exec and run on many boards over one connection: one MQTT client subscribed to every
// target's status and replies sends the same source to each, at most --parallel waiting at a
// time, and prints each board's output as a block of lines behind "PREFIX: " once it is
// complete, then the summary (as fanout.c, which other commands use: a process per board).
// Every reply is untrusted: matched to its board by id, sequence-checked, bounded, escaped.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"

// Output kept per board at most; beyond it the rest is dropped and the board says so.
#define FLEET_OUT_MAX (1024 * 1024)
// A board without a status (the original code, or nobody) has this long to answer first, as
// the single-board presence probe (session.c PROBE_S).
#define FLEET_PROBE_S 0.7

enum board_state { WAITING, SENT, DONE, PRINTED };

struct fboard {
    const char *prefix;
    char id[ID_LEN];
    enum board_state state;
    bool sent;  // its eval went out (it counts against --parallel until done)
    int online; // its status: 1 online, 0 offline, -1 none seen
    char *out, *err;
    size_t len;
    bool cut;          // output beyond FLEET_OUT_MAX was dropped
    uint16_t next_seq; // the next reply/out message expected
    double deadline;   // silence allowed until then
    int code;
    struct board_trust trust; // its key, from its signed status (keys.c)
    bool expect_key;          // its key is recorded here: its status is awaited
};

static void done(struct fboard *b, int code, const char *err) {
    b->state = DONE;
    b->code = code;
    if (err != NULL && b->err == NULL) {
        b->err = strdup(err);
    }
}

static struct fboard *by_status_topic(struct fboard *v, int n, const char *topic) {
    static const char suffix[] = "/mqb/status";
    size_t tl = strlen(topic), sl = sizeof(suffix) - 1;
    for (int i = 0; tl > sl && i < n; i++) {
        size_t pl = strlen(v[i].prefix);
        if (pl + sl == tl && memcmp(topic, v[i].prefix, pl) == 0 &&
            strcmp(topic + pl, suffix) == 0) {
            return &v[i];
        }
    }
    return NULL;
}

static void append(struct fboard *b, const uint8_t *data, size_t len) {
    size_t take = b->len + len > FLEET_OUT_MAX ? FLEET_OUT_MAX - b->len : len;
    b->cut |= take < len;
    b->out = realloc(b->out, b->len + take + 1);
    if (take > 0) {
        memcpy(b->out + b->len, data, take);
    }
    b->len += take;
    b->out[b->len] = '\0';
}

// A reply/out message of b's eval: in sequence, or the board's reply has a hole.
static void take_out(struct fboard *b, const struct reply *r) {
    struct mqb_hdr h;
    if (mqb_hdr_decode(r->data, r->len, &h) != MQB_OK) {
        done(b, EXIT_BOARD, "the board sent a reply without a header");
        return;
    }
    bool single = mqb_hdr_is_single(&h) && b->next_seq == 0;
    if (!single && h.seq != b->next_seq) {
        done(b, EXIT_BOARD, "sequence gap: a reply message was lost");
        return;
    }
    append(b, r->data + MQB_HDR_LEN, r->len - MQB_HDR_LEN);
    b->next_seq = (uint16_t)((b->next_seq + 1) & MQB_SEQ_MASK);
    if (single || h.last) {
        done(b, EXIT_OK, NULL);
    }
}

// One message from the broker: a board's status, or a reply to a board's eval.
static void take(struct fboard *v, int n, const char *topic, const struct reply *r,
                 double silence) {
    struct fboard *b = by_status_topic(v, n, topic);
    if (b != NULL) {
        struct board_status st;
        parse_status(r->data, r->len, &st);
        if (!keys_take_status(&b->trust, stderr, r->data, r->len, &st)) {
            return; // not signed by the board's recorded key: not its own
        }
        b->online = st.online;
        if (b->state == SENT && st.online == 0 && b->len == 0) {
            done(b, EXIT_TIMEOUT, "mqboard: the board is offline"); // a late status, a will
        }
        return;
    }
    const char *id = strrchr(topic, '/');
    for (int i = 0; id != NULL && i < n && b == NULL; i++) {
        b = v[i].state == SENT && strcmp(v[i].id, id + 1) == 0 ? &v[i] : NULL;
    }
    size_t pl = b != NULL ? strlen(b->prefix) : 0;
    if (b == NULL || strncmp(topic, b->prefix, pl) != 0) {
        return; // not ours: a late reply, another tool's
    }
    struct mqb_topic tp;
    struct reply checked = *r;
    if (mqb_topic_parse(b->prefix, topic, strlen(topic), &tp) != MQB_OK ||
        !keys_check_reply(&b->trust, stderr, "eval", topic, &tp, r->data, &checked.len, true)) {
        return; // not the board's reply
    }
    r = &checked;
    b->deadline = tool_now() + silence;
    if (strncmp(topic + pl, "/mqb/reply/err/", 15) == 0) {
        char *text = strndup((const char *)r->data, r->len);
        done(b, EXIT_BOARD, text);
        free(text);
    } else if (strncmp(topic + pl, "/mqb/reply/out/", 15) == 0) {
        take_out(b, r);
    }
}

// Prints text behind "PREFIX: ", line by line, with control characters escaped.
static void print_block(FILE *to, const char *prefix, const char *text) {
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '\n') {
        n--;
    }
    for (size_t start = 0; start < n;) {
        size_t end = start;
        while (end < n && text[end] != '\n') {
            end++;
        }
        tool_prefixed_line(to, prefix, text + start, end - start);
        start = end + 1;
    }
}

static void report(struct tool *t, struct fboard *b, cJSON *results) {
    if (b->len > 0 && b->out[b->len - 1] != '\n') {
        append(b, (const uint8_t *)"\n", 1); // as the single-board eval prints it
    }
    if (t->opts.json) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "exit_code", b->code);
        cJSON_AddStringToObject(r, "output", b->out != NULL ? b->out : "");
        if (b->err != NULL) {
            cJSON_AddStringToObject(r, "error", b->err);
        } else {
            cJSON_AddNullToObject(r, "error");
        }
        cJSON_AddItemToObject(results, b->prefix, r);
    } else {
        print_block(t->out, b->prefix, b->out != NULL ? b->out : "");
        if (b->cut) {
            fprintf(t->err, "%s: mqboard: output over %d bytes was cut\n", b->prefix,
                    FLEET_OUT_MAX);
        }
        print_block(t->err, b->prefix, b->err != NULL ? b->err : "");
        fflush(t->out);
        fflush(t->err);
    }
    free(b->out);
    free(b->err);
    b->out = b->err = NULL;
    b->state = PRINTED;
}

// Sends the eval to the next boards while fewer than --parallel wait.
static void send_more(struct tool *t, struct fboard *v, int n, int *next, int *active,
                      const uint8_t *msg, size_t len) {
    struct session *s = &t->session;
    int par = t->opts.parallel > 0 ? t->opts.parallel : FANOUT_DEFAULT;
    while (*next < n && *active < par) {
        struct fboard *b = &v[(*next)++];
        char topic[MQB_TOPIC_MAX];
        session_new_id(s, b->id, sizeof(b->id));
        if (b->online == 0) {
            done(b, EXIT_TIMEOUT, "mqboard: the board is offline");
        } else if (mqb_topic_cmd(topic, sizeof(topic), b->prefix, "eval", b->id, NULL) != MQB_OK ||
                   session_publish_to(s, &b->trust, topic, msg, len) != MOSQ_ERR_SUCCESS) {
            done(b, EXIT_CONN, "mqboard: cannot send to the broker");
        } else {
            b->state = SENT;
            b->sent = true;
            double first =
                b->online == 1 || t->opts.timeout < FLEET_PROBE_S ? t->opts.timeout : FLEET_PROBE_S;
            b->deadline = tool_now() + first;
            (*active)++;
        }
    }
}

// Ctrl-C (or a lost connection): every eval still running is interrupted.
static void give_up(struct tool *t, struct fboard *v, int n, int code) {
    const char *saved = t->opts.prefix;
    for (int i = 0; i < n; i++) {
        if (v[i].state == SENT) {
            t->opts.prefix = v[i].prefix;
            if (code == EXIT_INTERRUPTED) { // signed for that board, when it wants it
                struct board_trust mine = t->session.trust;
                t->session.trust = v[i].trust;
                session_send_aside(&t->session, "interrupt", v[i].id);
                t->session.trust = mine;
            }
            done(&v[i], code, code == EXIT_INTERRUPTED ? "KeyboardInterrupt" : "mqboard: gave up");
        } else if (v[i].state == WAITING) {
            done(&v[i], code, "mqboard: not sent");
        }
    }
    t->opts.prefix = saved;
    session_flush(&t->session);
}

static int run_all(struct tool *t, struct fboard *v, int n, const uint8_t *msg, size_t len,
                   cJSON *results) {
    struct session *s = &t->session;
    int next = 0, active = 0, printed = 0, code = EXIT_OK;
    const char *topic;
    struct reply r;
    while (session_take_any(s, &topic, &r)) { // the statuses that came with the subscriptions
        take(v, n, topic, &r, t->opts.timeout);
    }
    // Boards whose keys are recorded here get signed commands: their signed statuses first,
    // which a clustered broker may deliver late (aedes: not for the first subscription;
    // subscribing again brings it).
    double until = tool_now() + t->opts.timeout;
    for (int i = 0; i < n; i++) {
        if (v[i].expect_key && !v[i].trust.key_ok) {
            mosquitto_subscribe(s->mosq, NULL, v[i].trust.status_topic, 0);
        }
    }
    for (int i = 0; i < n && code == EXIT_OK; i++) {
        while (v[i].expect_key && !v[i].trust.key_ok && !v[i].trust.refused && tool_now() < until &&
               !tool_interrupted && session_pump(s, 0.1) == EXIT_OK) {
            while (session_take_any(s, &topic, &r)) {
                take(v, n, topic, &r, t->opts.timeout);
            }
        }
    }
    while (printed < n) {
        if (code == EXIT_OK) {
            send_more(t, v, n, &next, &active, msg, len);
        }
        if (code == EXIT_OK && (tool_interrupted || tool_leaving)) {
            code = EXIT_INTERRUPTED;
            give_up(t, v, n, code);
        }
        if (code == EXIT_OK && active > 0 && session_pump(s, 0.1) != EXIT_OK) {
            fprintf(t->err, "mqboard: lost the connection to the broker\n");
            code = EXIT_CONN;
            give_up(t, v, n, code);
        }
        while (session_take_any(s, &topic, &r)) {
            take(v, n, topic, &r, t->opts.timeout);
        }
        double now = tool_now();
        for (int i = 0; i < n; i++) {
            struct fboard *b = &v[i];
            if (b->state == SENT && now > b->deadline) {
                done(b, EXIT_TIMEOUT,
                     b->online == 1 || b->len > 0
                         ? "mqboard: the board fell silent (-T sets how long it may)"
                         : "mqboard: no board answers here (no status, no answer)");
            }
            if (b->state == DONE) {
                active -= b->sent;
                report(t, b, results);
                printed++;
            }
        }
    }
    return code;
}

int fleet_eval(struct tool *t, const char *const *targets, int n, int argc, char **argv) {
    static const char *const kinds[] = {"eval", "exec", "run"};
    bool eval_like = false;
    for (size_t i = 0; i < 3; i++) {
        eval_like |= strcmp(argv[0], kinds[i]) == 0;
    }
    if (!eval_like || t->opts.canary > 0) {
        return -1;
    }
    size_t len = 0;
    int code = EXIT_OK;
    char *src = eval_source(t, argc, argv, &len, &code);
    if (src == NULL) {
        return code;
    }
    if (len > MQB_CHUNK_MAX - 64) {
        free(src);
        return -1; // several messages per eval: a process per board does it
    }
    uint8_t *msg = malloc(MQB_HDR_LEN + len);
    mqb_hdr_encode(msg, MQB_SEQ_MASK, true);
    memcpy(msg + MQB_HDR_LEN, src, len);
    free(src);
    t->command = argv[0];
    code = session_connect_many(t, targets, n);
    struct fboard *v = calloc((size_t)n, sizeof(*v));
    cJSON *results = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        v[i] = (struct fboard){.prefix = targets[i], .online = -1, .code = EXIT_OK};
        keys_trust_init(&v[i].trust, targets[i]);
        v[i].expect_key = keys_expected(&v[i].trust);
    }
    if (code == EXIT_OK) {
        code = run_all(t, v, n, msg, MQB_HDR_LEN + len, results);
    }
    int ok = 0, failed = 0, offline = 0;
    for (int i = 0; i < n; i++) {
        ok += v[i].state == PRINTED && v[i].code == EXIT_OK;
        offline += v[i].state == PRINTED && v[i].code == EXIT_TIMEOUT;
        failed += v[i].state == PRINTED && v[i].code != EXIT_OK && v[i].code != EXIT_TIMEOUT;
    }
    session_close(&t->session);
    for (int i = 0; i < n; i++) {
        keys_free(NULL, &v[i].trust);
    }
    fanout_summary(t, ok, failed, offline, n, results);
    free(v);
    free(msg);
    return code != EXIT_OK ? code : ok == n ? EXIT_OK : EXIT_BOARD;
}
