// The core engine's platform hooks on POSIX: publishing with back-pressure, the board
// filesystem, SHA-256 (OpenSSL), eval input collection, OTA into the A/B slots, and the
// commands the engine leaves to the agent (interrupt).
#define _GNU_SOURCE
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../sigkey/sigkey.h"
#include "agent.h"

// Messages published but not yet acknowledged by the broker beyond which streams wait.
#define OUT_QUEUE_MAX 64
// Longest lease a requester may ask for (ms).
#define LEASE_MAX_MS (3600u * 1000)
// A new mount's lease, until its owner's first renewal.
#define MOUNT_LEASE_MS 15000
// Largest eval source accepted (over all its messages).
#define EVAL_SRC_MAX (16u * 1024 * 1024)

// Eval input that spans several messages, collected until its last message.
struct eval_input {
    char id[MQB_ID_MAX + 1];
    char *buf;
    size_t len;
    bool used;
};

static enum mqb_err p_publish(void *ctx, const char *topic, const uint8_t *payload, size_t len) {
    struct agent *a = ctx;
    int rc = mqtt_publish(a, topic, payload, len, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        agent_log(a, 'W', "publish to %s failed: %s", topic, mosquitto_strerror(rc));
        return MQB_ERR_IO;
    }
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
    struct agent *a = ctx;
    // OTA handles are numbered from FS_MAX_FILES up and are plain fds of the slots.
    if (fh >= FS_MAX_FILES) {
        return fs_write_fd(fh - FS_MAX_FILES, buf, len);
    }
    return fs_write(&a->fs, fh, buf, len);
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
    if (a->inputs == NULL) {
        a->inputs = calloc(MQB_MAX_XFERS, sizeof(*a->inputs));
    }
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
    if (!create || free_slot == NULL) {
        return NULL;
    }
    snprintf(free_slot->id, sizeof(free_slot->id), "%s", id);
    free_slot->buf = NULL;
    free_slot->len = 0;
    free_slot->used = true;
    return free_slot;
}

static void p_eval_abort(void *ctx, const char *id) {
    struct eval_input *in = input_find(ctx, id, false);
    if (in != NULL) {
        free(in->buf);
        in->used = false;
    }
}

void agent_inputs_free(struct agent *a) {
    for (unsigned i = 0; a->inputs != NULL && i < MQB_MAX_XFERS; i++) {
        free(a->inputs[i].buf);
    }
    free(a->inputs);
    a->inputs = NULL;
}

static void reply_err_text(struct agent *a, const char *id, const char *msg) {
    mqb_engine_reply_err(&a->engine, id, msg, strlen(msg));
}

static void reply_text(struct agent *a, const char *id, const char *msg) {
    mqb_engine_reply_out(&a->engine, id, MQB_SEQ_MASK, true, (const uint8_t *)msg, strlen(msg));
}

// interrupt: the running eval named by the tail (or whatever runs) gets KeyboardInterrupt;
// a queued one is dropped and its requester told so.
static void cmd_interrupt(struct agent *a, const char *id, const char *tail) {
    enum pyeval_hit hit = pyeval_interrupt(a->pe, tail[0] != '\0' ? tail : NULL);
    if (hit == PYEVAL_HIT_QUEUED) {
        reply_err_text(a, tail, "KeyboardInterrupt: cancelled before it ran\n");
    }
    reply_text(a, id, hit != PYEVAL_MISS ? "OK" : "no eval running");
}

// running: is the eval named by the tail queued or running? Data "lease S": the requester is
// alive and waits; interrupt the eval if no such message comes for S seconds.
static void cmd_running(struct agent *a, const char *id, const char *tail, const uint8_t *data,
                        size_t len) {
    char buf[32] = "";
    memcpy(buf, data, len < sizeof(buf) - 1 ? len : sizeof(buf) - 1);
    unsigned long secs = 0;
    bool known = pyeval_known(a->pe, tail);
    if (sscanf(buf, "lease %lu", &secs) == 1 && secs > 0) {
        uint64_t until =
            pyeval_now_ms() + (secs * 1000 < LEASE_MAX_MS ? secs * 1000 : LEASE_MAX_MS);
        known = known ? pyeval_renew(a->pe, tail, until) : ask_mount_renew(&a->ask, tail, until);
    }
    reply_text(a, id, known ? "1" : "0");
}

// ans: the host's answer to question n (the tail) that the board asked under id.
static void cmd_ans(struct agent *a, const char *id, const char *tail, const uint8_t *data,
                    size_t len) {
    char *end;
    unsigned long n = strtoul(tail, &end, 10);
    if (tail[0] == '\0' || *end != '\0' || !ask_answer(&a->ask, id, n, data, len)) {
        agent_log(a, 'D', "ans %s/%s: no such question (late, or not ours)", id, tail);
    }
}

// trust: lists or changes the keys the board obeys (a signed command, so only a key it
// already obeys can; a board without keys takes its first one locally: docs/security.md).
static void cmd_trust(struct agent *a, const char *id, const uint8_t *data, size_t len) {
    char out[MQB_AUTH_KEYS_MAX * (SIGKEY_FPR_LEN + 1) + 256];
    if (!mqb_engine_signing(&a->engine)) {
        reply_err_text(a, id,
                       a->trust.board == NULL
                           ? "not supported: mqrepld runs without --keys"
                           : "not authorized: a board without authorized keys takes its first "
                             "key on the board itself (its --keys directory's authorized_keys)");
        return;
    }
    if (trust_command(&a->trust, (const char *)data, len, out, sizeof(out))) {
        agent_log(a, 'W', "trust: %s", out);
        reply_text(a, id, out);
    } else {
        reply_err_text(a, id, out);
    }
}

// mount: the host (id) serves a directory that the board sees as /remote: data "ro" or "rw";
// "off" ends it. The mount lasts while its owner renews the lease (running with the mount's
// id), so a host that vanishes leaves nothing mounted.
static void cmd_mount(struct agent *a, const char *id, const uint8_t *data, size_t len) {
    char owner[MQB_ID_MAX + 1];
    bool on = len == 2 && (memcmp(data, "ro", 2) == 0 || memcmp(data, "rw", 2) == 0);
    if (on) {
        ask_mount(&a->ask, id, data[1] == 'w', pyeval_now_ms() + MOUNT_LEASE_MS);
        agent_log(a, 'I', "/remote mounted (%s) by %s", data[1] == 'w' ? "writable" : "read-only",
                  id);
    } else if (len == 3 && memcmp(data, "off", 3) == 0) {
        if (ask_mounted(&a->ask, owner, sizeof(owner)) >= 0 && strcmp(owner, id) == 0) {
            ask_mount(&a->ask, "", false, 0);
            agent_log(a, 'I', "/remote unmounted");
        }
    } else {
        reply_err_text(a, id, "mount: the data is ro, rw or off");
        return;
    }
    reply_text(a, id, "OK");
}

// reset: the control path's reset, handled here whatever the interpreter does. Data: the
// mode letter ('n' normal, 'f' safe, 's' soft, 'h' hard; empty: 'n').
static void cmd_reset(struct agent *a, const char *id, const uint8_t *data, size_t len) {
    char mode = len > 0 ? (char)data[0] : 'n';
    if (len > 1 || strchr("nfsh", mode) == NULL) {
        reply_err_text(a, id, "reset: the mode is one of n, f, s, h");
        return;
    }
    reply_text(a, id, "OK");
    agent_request_reset(a, mode, true, NULL);
}

// Tells the host at once, on reply/busy/<id> (a topic the original tool does not listen
// to), that its eval waits behind another: what runs, for how long, how many wait.
static void say_busy(struct agent *a, const char *id) {
    struct pyeval_busy b;
    if (a->cfg->original || !pyeval_busy(a->pe, &b)) {
        return;
    }
    // The source may be anything: only printable ASCII goes into the JSON text.
    for (char *c = b.what; *c != '\0'; c++) {
        *c = *c >= 0x20 && *c < 0x7f ? *c : *c == '\n' ? '\n' : '?';
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", b.id);
    cJSON_AddStringToObject(j, "what", b.what);
    cJSON_AddNumberToObject(j, "seconds", (double)b.ms / 1000.0);
    cJSON_AddNumberToObject(j, "queued", b.queued);
    char *s = cJSON_PrintUnformatted(j);
    char topic[MQB_TOPIC_MAX];
    snprintf(topic, sizeof(topic), "%s/mqb/reply/busy/%s", a->cfg->prefix, id);
    mqtt_publish(a, topic, s, strlen(s), 1, false);
    free(s);
    cJSON_Delete(j);
}

static void reply_err_text(struct agent *a, const char *id, const char *msg);

// Queues a complete eval (taking src), or refuses it when the queue is full.
static enum mqb_err submit(struct agent *a, const char *id, char *src, size_t len) {
    say_busy(a, id);
    if (!pyeval_submit(a->pe, id, src, len, false)) {
        reply_err_text(a, id, "board busy: too many evals queued (at most 64); try again later");
        return MQB_ERR_BUSY;
    }
    return MQB_OK;
}

static enum mqb_err p_eval(void *ctx, const char *id, const uint8_t *src, size_t len, bool first,
                           bool last) {
    struct agent *a = ctx;
    if (a->cfg->verbose > 0) {
        agent_log(a, 'D', "eval %s (%zu bytes%s)", id, len, last ? "" : ", more to come");
    }
    if (first && last) {
        char *copy = malloc(len + 1);
        if (len > 0) {
            memcpy(copy, src, len);
        }
        return submit(a, id, copy, len);
    }
    if (first) {
        p_eval_abort(a, id);
    }
    struct eval_input *in = input_find(a, id, true);
    if (in == NULL) {
        reply_err_text(a, id, "too many evals being received at once");
        return MQB_ERR_BUSY;
    }
    if (in->len + len > EVAL_SRC_MAX) {
        p_eval_abort(a, id);
        reply_err_text(a, id, "eval source too big: the board accepts at most 16 MB");
        return MQB_ERR_TOOBIG;
    }
    in->buf = realloc(in->buf, in->len + len + 1);
    if (len > 0) {
        memcpy(in->buf + in->len, src, len);
    }
    in->len += len;
    if (last) {
        char *buf = in->buf;
        in->used = false;
        in->buf = NULL;
        return submit(a, id, buf, in->len);
    }
    return MQB_OK;
}

static enum mqb_err p_ota_open(void *ctx, int *fh) {
    struct agent *a = ctx;
    int fd;
    if (a->slots.running < 0) {
        return MQB_ERR_UNSUPPORTED;
    }
    int rc = slots_ota_open(&a->slots, &fd);
    if (rc != 0) {
        return rc == -2 ? MQB_ERR_PENDING : MQB_ERR_IO;
    }
    *fh = fd + FS_MAX_FILES;
    return MQB_OK;
}

static enum mqb_err p_ota_close(void *ctx, int fh, bool commit) {
    struct agent *a = ctx;
    if (slots_ota_close(&a->slots, fh - FS_MAX_FILES, commit) != 0) {
        return MQB_ERR_IO;
    }
    if (commit) {
        agent_log(a, 'W', "OTA: new image in slot %d, booted at the next reset",
                  1 - a->slots.running);
    }
    return MQB_OK;
}

static enum mqb_err p_ota_check(void *ctx, const uint8_t sha256[MQB_SHA256_LEN],
                                const char *extra) {
    struct agent *a = ctx;
    enum mqb_err err = trust_image(&a->trust, sha256, extra);
    if (err != MQB_OK) {
        agent_log(a, 'E', "OTA: %s", mqb_strerror(err));
    }
    return err;
}

static enum mqb_err p_command(void *ctx, const char *cmd, const char *id, const char *tail,
                              const uint8_t *data, size_t len) {
    struct agent *a = ctx;
    if (strcmp(cmd, "interrupt") == 0) {
        cmd_interrupt(a, id, tail);
        return MQB_OK;
    }
    if (strcmp(cmd, "running") == 0) {
        cmd_running(a, id, tail, data, len);
        return MQB_OK;
    }
    if (strcmp(cmd, "reset") == 0) {
        cmd_reset(a, id, data, len);
        return MQB_OK;
    }
    if (strcmp(cmd, "ans") == 0) {
        cmd_ans(a, id, tail, data, len);
        return MQB_OK;
    }
    if (strcmp(cmd, "mount") == 0) {
        cmd_mount(a, id, data, len);
        return MQB_OK;
    }
    if (strcmp(cmd, "trust") == 0) {
        cmd_trust(a, id, data, len);
        return MQB_OK;
    }
    return MQB_ERR_UNSUPPORTED;
}

static enum mqb_err p_sig_verify(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                                 size_t hlen, const uint8_t *data, size_t dlen,
                                 const uint8_t sig[MQB_SIG_LEN]) {
    struct agent *a = ctx;
    return trust_verify(&a->trust, pub, head, hlen, data, dlen, sig) ? MQB_OK : MQB_ERR_AUTH_SIG;
}

static enum mqb_err p_sig_sign(void *ctx, const uint8_t *head, size_t hlen, const uint8_t *data,
                               size_t dlen, uint8_t sig[MQB_SIG_LEN]) {
    struct agent *a = ctx;
    return a->trust.board != NULL && sigkey_sign(a->trust.board, head, hlen, data, dlen, sig) == 0
               ? MQB_OK
               : MQB_ERR_IO;
}

const struct mqb_platform agent_platform = {
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
    .ota_open = p_ota_open,
    .ota_close = p_ota_close,
    .ota_check = p_ota_check,
    .command = p_command,
    .sig_verify = p_sig_verify,
    .sig_sign = p_sig_sign,
};
