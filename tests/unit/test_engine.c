// Unit tests of the device-side engine over a fake platform: in-memory files, a fake hash,
// recorded publishes and eval calls.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqb/engine.h"
#include "tests.h"

#define MAX_PUBS 64
#define FILE_CAP 16384

struct fake_file {
    char path[64];
    uint8_t data[FILE_CAP];
    size_t len;
    bool exists;
    // The open handle: writes go to a shadow copy that replaces data only on commit.
    uint8_t shadow[FILE_CAP];
    size_t shadow_len, pos;
    bool open, writing;
};

struct fake {
    struct fake_file files[4];
    struct {
        char topic[MQB_TOPIC_MAX];
        uint8_t payload[MQB_HDR_LEN + 2048];
        size_t len;
    } pubs[MAX_PUBS];
    int npubs;
    size_t room;
    uint8_t hash[MQB_HASH_SLOTS][MQB_SHA256_LEN];
    int evals;
    char eval_src[256];
    bool eval_last;
};

static struct fake_file *find(struct fake *f, const char *path) {
    for (int i = 0; i < 4; i++) {
        if (f->files[i].exists && strcmp(f->files[i].path, path) == 0) {
            return &f->files[i];
        }
    }
    return NULL;
}

static enum mqb_err f_publish(void *ctx, const char *topic, const uint8_t *p, size_t len) {
    struct fake *f = ctx;
    assert_true(f->npubs < MAX_PUBS);
    snprintf(f->pubs[f->npubs].topic, MQB_TOPIC_MAX, "%s", topic);
    size_t n = len < sizeof(f->pubs[0].payload) ? len : sizeof(f->pubs[0].payload);
    memcpy(f->pubs[f->npubs].payload, p, n);
    f->pubs[f->npubs].len = len;
    f->npubs++;
    if (f->room > 0) {
        f->room--;
    }
    return MQB_OK;
}

static size_t f_room(void *ctx) {
    return ((struct fake *)ctx)->room;
}

static enum mqb_err f_open_read(void *ctx, const char *path, int *fh, uint64_t *size) {
    struct fake *f = ctx;
    struct fake_file *ff = find(f, path);
    if (ff == NULL) {
        return MQB_ERR_NOENT;
    }
    ff->open = true;
    ff->writing = false;
    ff->pos = 0;
    *fh = (int)(ff - f->files);
    *size = ff->len;
    return MQB_OK;
}

static enum mqb_err f_open_write(void *ctx, const char *path, int *fh) {
    struct fake *f = ctx;
    struct fake_file *ff = find(f, path);
    for (int i = 0; ff == NULL && i < 4; i++) {
        if (!f->files[i].exists) {
            ff = &f->files[i];
            snprintf(ff->path, sizeof(ff->path), "%s", path);
            ff->exists = true;
            ff->len = 0;
        }
    }
    ff->open = true;
    ff->writing = true;
    ff->shadow_len = 0;
    *fh = (int)(ff - f->files);
    return MQB_OK;
}

static enum mqb_err f_read(void *ctx, int fh, uint8_t *buf, size_t cap, size_t *n) {
    struct fake_file *ff = &((struct fake *)ctx)->files[fh];
    size_t left = ff->len - ff->pos;
    *n = left < cap ? left : cap;
    memcpy(buf, ff->data + ff->pos, *n);
    ff->pos += *n;
    return MQB_OK;
}

static enum mqb_err f_write(void *ctx, int fh, const uint8_t *buf, size_t len) {
    struct fake_file *ff = &((struct fake *)ctx)->files[fh];
    if (ff->shadow_len + len > FILE_CAP) {
        return MQB_ERR_NOSPC;
    }
    memcpy(ff->shadow + ff->shadow_len, buf, len);
    ff->shadow_len += len;
    return MQB_OK;
}

static enum mqb_err f_close(void *ctx, int fh, bool commit) {
    struct fake_file *ff = &((struct fake *)ctx)->files[fh];
    if (ff->writing && commit) {
        memcpy(ff->data, ff->shadow, ff->shadow_len);
        ff->len = ff->shadow_len;
    }
    ff->open = false;
    return MQB_OK;
}

// The fake hash: byte i of the digest is the sum of the data bytes at positions = i mod 32.
static enum mqb_err f_hash_init(void *ctx, unsigned slot) {
    memset(((struct fake *)ctx)->hash[slot], 0, MQB_SHA256_LEN);
    return MQB_OK;
}

static void fake_digest(uint8_t *h, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        h[i % MQB_SHA256_LEN] = (uint8_t)(h[i % MQB_SHA256_LEN] + data[i]);
    }
}

static enum mqb_err f_hash_update(void *ctx, unsigned slot, const uint8_t *data, size_t len) {
    // Chunks in these tests are multiples of 32 bytes, so per-chunk positions line up.
    fake_digest(((struct fake *)ctx)->hash[slot], data, len);
    return MQB_OK;
}

static enum mqb_err f_hash_final(void *ctx, unsigned slot, uint8_t out[MQB_SHA256_LEN]) {
    memcpy(out, ((struct fake *)ctx)->hash[slot], MQB_SHA256_LEN);
    return MQB_OK;
}

static enum mqb_err f_eval(void *ctx, const char *id, const uint8_t *src, size_t len, bool first,
                           bool last) {
    struct fake *f = ctx;
    (void)id;
    if (first) {
        f->eval_src[0] = '\0';
    }
    strncat(f->eval_src, (const char *)src, len);
    f->evals++;
    f->eval_last = last;
    return MQB_OK;
}

static void f_eval_abort(void *ctx, const char *id) {
    (void)id;
    ((struct fake *)ctx)->eval_src[0] = '\0';
}

// OTA: the image goes to file 3 ("slot"); a commit counts as activating it.
static int ota_commits;

static enum mqb_err f_ota_open(void *ctx, int *fh) {
    struct fake_file *ff = &((struct fake *)ctx)->files[3];
    snprintf(ff->path, sizeof(ff->path), "slot");
    ff->exists = true;
    ff->open = true;
    ff->writing = true;
    ff->shadow_len = 0;
    *fh = 3;
    return MQB_OK;
}

static enum mqb_err f_ota_close(void *ctx, int fh, bool commit) {
    ota_commits += commit;
    return f_close(ctx, fh, commit);
}

static const struct mqb_platform fake_platform = {
    .publish = f_publish,
    .out_room = f_room,
    .file_open_read = f_open_read,
    .file_open_write = f_open_write,
    .file_read = f_read,
    .file_write = f_write,
    .file_close = f_close,
    .hash_init = f_hash_init,
    .hash_update = f_hash_update,
    .hash_final = f_hash_final,
    .eval = f_eval,
    .eval_abort = f_eval_abort,
    .ota_open = f_ota_open,
    .ota_close = f_ota_close,
};

struct fixture {
    struct fake fake;
    struct mqb_engine engine;
};

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof(*fx));
    fx->fake.room = 1000;
    assert_int_equal(mqb_engine_init(&fx->engine, &fake_platform, &fx->fake, "b", "fake 1"),
                     MQB_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    struct fixture *fx = *state;
    mqb_engine_deinit(&fx->engine);
    free(fx);
    return 0;
}

// Sends a command message with header (seq, last) and data.
static enum mqb_err send(struct fixture *fx, const char *topic, uint16_t seq, bool last,
                         const void *data, size_t len) {
    static uint8_t buf[MQB_HDR_LEN + MQB_CHUNK_MAX + 16];
    mqb_hdr_encode(buf, seq, last);
    memcpy(buf + MQB_HDR_LEN, data, len);
    return mqb_engine_input(&fx->engine, topic, buf, len + MQB_HDR_LEN, false, 1000);
}

static void assert_pub(struct fixture *fx, int i, const char *topic, uint16_t hdr,
                       const char *data) {
    assert_true(i < fx->fake.npubs);
    assert_string_equal(fx->fake.pubs[i].topic, topic);
    const uint8_t *p = fx->fake.pubs[i].payload;
    size_t len = fx->fake.pubs[i].len;
    if (strstr(topic, "/err/") == NULL) {
        assert_int_equal((p[0] << 8) | p[1], hdr);
        p += 2;
        len -= 2;
    }
    if (data != NULL) {
        assert_int_equal(len, strlen(data));
        assert_memory_equal(p, data, len);
    }
}

static void test_eval_single_and_multi(void **state) {
    struct fixture *fx = *state;
    assert_int_equal(send(fx, "b/mqb/cmd/eval/e1", 0, true, "1+1", 3), MQB_OK);
    assert_string_equal(fx->fake.eval_src, "1+1");
    assert_true(fx->fake.eval_last);
    assert_int_equal(send(fx, "b/mqb/cmd/eval/e2", 0, false, "x=", 2), MQB_OK);
    assert_int_equal(send(fx, "b/mqb/cmd/eval/e2", 0, false, "x=", 2), MQB_ERR_DUP);
    assert_int_equal(send(fx, "b/mqb/cmd/eval/e2", 1, true, "5", 1), MQB_OK);
    assert_string_equal(fx->fake.eval_src, "x=5");
    assert_true(fx->fake.eval_last);
    assert_int_equal(mqb_engine_busy(&fx->engine), 0);
}

static void test_put_dups_and_commit(void **state) {
    struct fixture *fx = *state;
    assert_int_equal(send(fx, "b/mqb/cmd/put/p1/f", 0, false, "ab", 2), MQB_OK);
    assert_int_equal(send(fx, "b/mqb/cmd/put/p1/f", 0, false, "ab", 2), MQB_ERR_DUP);
    assert_int_equal(send(fx, "b/mqb/cmd/put/p1/f", 1, false, "cd", 2), MQB_OK);
    assert_int_equal(find(&fx->fake, "f")->len, 0); // nothing visible before the end
    assert_int_equal(send(fx, "b/mqb/cmd/put/p1/f", 2, true, "e", 1), MQB_OK);
    struct fake_file *ff = find(&fx->fake, "f");
    assert_int_equal(ff->len, 5);
    assert_memory_equal(ff->data, "abcde", 5);
    assert_int_equal(fx->fake.npubs, 1);
    assert_pub(fx, 0, "b/mqb/reply/out/p1", 0xFFFF, "OK");
    // A redelivery of the last message after the end is dropped silently.
    assert_int_equal(mqb_engine_input(&fx->engine, "b/mqb/cmd/put/p1/f",
                                      (const uint8_t *)"\x80\x02"
                                                       "e",
                                      3, true, 1000),
                     MQB_ERR_DUP);
    assert_int_equal(fx->fake.npubs, 1);
}

static void test_put_gap_keeps_old(void **state) {
    struct fixture *fx = *state;
    send(fx, "b/mqb/cmd/put/p1/f", 0, true, "old", 3);
    fx->fake.npubs = 0;
    assert_int_equal(send(fx, "b/mqb/cmd/put/p2/f", 0, false, "new", 3), MQB_OK);
    assert_int_equal(send(fx, "b/mqb/cmd/put/p2/f", 2, true, "x", 1), MQB_ERR_GAP);
    struct fake_file *ff = find(&fx->fake, "f");
    assert_int_equal(ff->len, 3);
    assert_memory_equal(ff->data, "old", 3);
    assert_pub(fx, 0, "b/mqb/reply/err/p2", 0, "sequence gap: a message was lost: f");
    assert_int_equal(mqb_engine_busy(&fx->engine), 0);
}

static void test_unknown_and_malformed(void **state) {
    struct fixture *fx = *state;
    assert_int_equal(send(fx, "b/mqb/cmd/frob/u1", 0, true, "", 0), MQB_ERR_UNSUPPORTED);
    assert_pub(fx, 0, "b/mqb/reply/err/u1", 0, "Command 'frob' not supported");
    assert_int_equal(
        mqb_engine_input(&fx->engine, "b/mqb/cmd/eval/u2", (const uint8_t *)"x", 1, false, 1000),
        MQB_ERR_MALFORMED);
    assert_pub(fx, 1, "b/mqb/reply/err/u2", 0, "malformed message: missing the 2-byte header");
    assert_int_equal(send(fx, "other/mqb/cmd/eval/u3", 0, true, "1", 1), MQB_ERR_MALFORMED);
    assert_int_equal(send(fx, "b/mqb/reply/out/u3", 0, true, "1", 1), MQB_ERR_MALFORMED);
    assert_int_equal(fx->fake.npubs, 2);
    assert_int_equal(send(fx, "b/mqb/cmd/put/u4", 0, true, "1", 1), MQB_ERR_BADPATH);
}

static void test_get_original_chunks(void **state) {
    struct fixture *fx = *state;
    struct fake_file *ff = &fx->fake.files[0];
    snprintf(ff->path, sizeof(ff->path), "g");
    ff->exists = true;
    ff->len = 6000;
    for (size_t i = 0; i < ff->len; i++) {
        ff->data[i] = (uint8_t)i;
    }
    assert_int_equal(send(fx, "b/mqb/cmd/get/g1/g", 0, true, "", 0), MQB_OK);
    while (mqb_engine_pump(&fx->engine, 1000)) {
    }
    assert_int_equal(fx->fake.npubs, 4);
    assert_pub(fx, 0, "b/mqb/reply/out/g1", 0x0000, NULL);
    assert_int_equal(fx->fake.pubs[0].len, 2 + 2800);
    assert_pub(fx, 1, "b/mqb/reply/out/g1", 0x0001, NULL);
    assert_int_equal(fx->fake.pubs[2].len, 2 + 400);
    assert_pub(fx, 3, "b/mqb/reply/out/g1", 0x8003, "");
    assert_int_equal(mqb_engine_busy(&fx->engine), 0);
    assert_false(ff->open);
}

static void test_path_too_long(void **state) {
    struct fixture *fx = *state;
    static char topic[MQB_PATH_MAX + 64];
    int n = snprintf(topic, sizeof(topic), "b/mqb/cmd/get/l1/");
    memset(topic + n, 'a', MQB_PATH_MAX + 1);
    assert_int_equal(send(fx, topic, 0, true, "", 0), MQB_ERR_BADPATH);
    assert_pub(fx, 0, "b/mqb/reply/err/l1", 0,
               "invalid path: longer than the board allows (512 bytes)");
}

static void test_get_missing(void **state) {
    struct fixture *fx = *state;
    assert_int_equal(send(fx, "b/mqb/cmd/get/g2/nope", 0, true, "", 0), MQB_ERR_NOENT);
    assert_pub(fx, 0, "b/mqb/reply/err/g2", 0, "no such file or directory: nope");
    assert_int_equal(mqb_engine_busy(&fx->engine), 0);
}

static void test_xget_window_and_acks(void **state) {
    struct fixture *fx = *state;
    struct fake_file *ff = &fx->fake.files[0];
    snprintf(ff->path, sizeof(ff->path), "g");
    ff->exists = true;
    ff->len = 10 * 256;
    for (size_t i = 0; i < ff->len; i++) {
        ff->data[i] = (uint8_t)(i * 7);
    }
    assert_int_equal(send(fx, "b/mqb/cmd/xget/x1/g", 0, true, "256 4", 5), MQB_OK);
    assert_pub(fx, 0, "b/mqb/reply/out/x1", 0x0000, "2560");
    mqb_engine_pump(&fx->engine, 1000);
    assert_int_equal(fx->fake.npubs, 4); // the window of 4 includes the size message
    assert_int_equal(send(fx, "b/mqb/cmd/ack/x1", 0x7FFF, true, "2", 1), MQB_OK);
    mqb_engine_pump(&fx->engine, 1000);
    assert_int_equal(fx->fake.npubs, 6);
    assert_int_equal(send(fx, "b/mqb/cmd/ack/x1", 0x7FFF, true, "abc", 3), MQB_ERR_MALFORMED);
    assert_int_equal(mqb_engine_busy(&fx->engine), 0);

    // Now to the end, acking everything: 1 size + 10 data + 1 hash message.
    fx->fake.npubs = 0;
    send(fx, "b/mqb/cmd/xget/x2/g", 0, true, "256 4", 5);
    for (int i = 0; i < 20 && mqb_engine_busy(&fx->engine) > 0; i++) {
        char ack[8];
        mqb_engine_pump(&fx->engine, 1000);
        int n = snprintf(ack, sizeof(ack), "%d", fx->fake.npubs);
        send(fx, "b/mqb/cmd/ack/x2", 0x7FFF, true, ack, (size_t)n);
    }
    assert_int_equal(fx->fake.npubs, 12);
    uint8_t digest[MQB_SHA256_LEN] = {0};
    fake_digest(digest, ff->data, ff->len);
    char hex[65];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }
    assert_pub(fx, 11, "b/mqb/reply/out/x2", 0x800B, hex);
}

static void test_xput_hash(void **state) {
    struct fixture *fx = *state;
    uint8_t data[64];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i + 1);
    }
    uint8_t digest[MQB_SHA256_LEN] = {0};
    fake_digest(digest, data, sizeof(data));
    char hex[65];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }
    assert_int_equal(send(fx, "b/mqb/cmd/xput/v1/f", 0, false, data, 32), MQB_OK);
    assert_int_equal(send(fx, "b/mqb/cmd/xput/v1/f", 1, false, data + 32, 32), MQB_OK);
    assert_int_equal(find(&fx->fake, "f")->len, 0); // nothing visible before the hash
    assert_int_equal(send(fx, "b/mqb/cmd/xput/v1/f", 2, true, hex, 64), MQB_OK);
    assert_int_equal(find(&fx->fake, "f")->len, 64);
    assert_pub(fx, 0, "b/mqb/reply/out/v1", 0xFFFF, "OK");

    // The same upload with one byte changed fails and leaves the file as it was.
    data[3] ^= 1;
    send(fx, "b/mqb/cmd/xput/v2/f", 0, false, data, 32);
    send(fx, "b/mqb/cmd/xput/v2/f", 1, false, data + 32, 32);
    assert_int_equal(send(fx, "b/mqb/cmd/xput/v2/f", 2, true, hex, 64), MQB_ERR_HASH);
    assert_int_equal(find(&fx->fake, "f")->data[3], 4);
    assert_pub(fx, 1, "b/mqb/reply/err/v2", 0, "hash mismatch: f");
    assert_int_equal(send(fx, "b/mqb/cmd/xput/v3/f", 0, true, "zz", 2), MQB_ERR_MALFORMED);
    // An empty file: one message, the hash of nothing.
    char empty[65];
    for (int i = 0; i < 32; i++) {
        snprintf(empty + 2 * i, 3, "%02x", 0);
    }
    assert_int_equal(send(fx, "b/mqb/cmd/xput/v4/e", 0, true, empty, 64), MQB_OK);
    assert_int_equal(find(&fx->fake, "e")->len, 0);
}

static void test_xput_acks(void **state) {
    struct fixture *fx = *state;
    for (uint16_t s = 0; s < MQB_WINDOW; s++) {
        send(fx, "b/mqb/cmd/xput/a1/f", s, false, "x", 1);
    }
    assert_int_equal(fx->fake.npubs, 2);
    assert_pub(fx, 0, "b/mqb/reply/out/a1", 0xFFFF, "SEQ 7");
    assert_pub(fx, 1, "b/mqb/reply/out/a1", 0xFFFF, "SEQ 15");
}

static void test_ota_one_at_a_time(void **state) {
    struct fixture *fx = *state;
    uint8_t data[64];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(3 * i);
    }
    uint8_t digest[MQB_SHA256_LEN] = {0};
    fake_digest(digest, data, sizeof(data));
    char topic[128] = "b/mqb/cmd/ota/o1/";
    char topic2[128] = "b/mqb/cmd/ota/o2/";
    for (int i = 0; i < 32; i++) {
        snprintf(topic + 17 + 2 * i, 3, "%02x", digest[i]);
        snprintf(topic2 + 17 + 2 * i, 3, "%02x", digest[i]);
    }
    ota_commits = 0;
    assert_int_equal(send(fx, topic, 0, false, data, 32), MQB_OK);
    // A second image supersedes the first, whose host is told.
    assert_int_equal(send(fx, topic2, 0, false, data, 32), MQB_OK);
    assert_pub(fx, 0, "b/mqb/reply/err/o1", 0, NULL);
    assert_int_equal(send(fx, topic, 1, true, data + 32, 32), MQB_ERR_GAP);
    assert_int_equal(ota_commits, 0);
    assert_int_equal(send(fx, topic2, 1, true, data + 32, 32), MQB_OK);
    assert_int_equal(ota_commits, 1);
    assert_memory_equal(find(&fx->fake, "slot")->data, data, 64);
    // A wrong hash installs nothing.
    topic2[17] = topic2[17] == '0' ? '1' : '0';
    send(fx, topic2, 0, false, data, 32);
    assert_int_equal(send(fx, topic2, 1, true, data + 32, 32), MQB_ERR_HASH);
    assert_int_equal(ota_commits, 1);
}

static void test_startup_dups_ignored(void **state) {
    struct fixture *fx = *state;
    const uint8_t msg[] = {0x80, 0x00, '1'};
    assert_int_equal(mqb_engine_input(&fx->engine, "b/mqb/cmd/eval/d1", msg, 3, true, 0),
                     MQB_ERR_DUP);
    assert_int_equal(fx->fake.evals, 0);
    assert_int_equal(mqb_engine_input(&fx->engine, "b/mqb/cmd/eval/d2", msg, 3, false, 0), MQB_OK);
    assert_int_equal(mqb_engine_input(&fx->engine, "b/mqb/cmd/eval/d3", msg, 3, true, 0), MQB_OK);
    assert_int_equal(fx->fake.evals, 2);
}

static void test_limits(void **state) {
    struct fixture *fx = *state;
    static uint8_t big[MQB_CHUNK_MAX + 1];
    assert_int_equal(send(fx, "b/mqb/cmd/eval/t1", 0, true, big, sizeof(big)), MQB_ERR_TOOBIG);
    assert_pub(fx, 0, "b/mqb/reply/err/t1", 0, NULL);
    char topic[64];
    for (int i = 0; i < MQB_MAX_XFERS; i++) {
        snprintf(topic, sizeof(topic), "b/mqb/cmd/eval/m%d", i);
        assert_int_equal(send(fx, topic, 0, false, "1", 1), MQB_OK);
    }
    assert_int_equal(send(fx, "b/mqb/cmd/eval/over", 0, false, "1", 1), MQB_ERR_BUSY);
    assert_pub(fx, 1, "b/mqb/reply/err/over", 0, "too many concurrent transfers");
    // A clock reading older than the transfers' last message (taken before it arrived) is not
    // a minute of silence.
    mqb_engine_pump(&fx->engine, 500);
    assert_int_equal(mqb_engine_busy(&fx->engine), MQB_MAX_XFERS);
    // Idle transfers are abandoned after MQB_XFER_IDLE_MS and their slots freed.
    mqb_engine_pump(&fx->engine, 1000 + MQB_XFER_IDLE_MS + 1);
    assert_int_equal(mqb_engine_busy(&fx->engine), 0);
}

static void test_caps(void **state) {
    struct fixture *fx = *state;
    send(fx, "b/mqb/cmd/caps/c1", 0, true, "", 0);
    assert_pub(fx, 0, "b/mqb/reply/out/c1", 0xFFFF,
               "{\"proto\":2,\"agent\":\"fake 1\",\"chunk\":65536,\"window\":16,\"xfers\":4}");
}

static void test_out_room_throttles(void **state) {
    struct fixture *fx = *state;
    struct fake_file *ff = &fx->fake.files[0];
    snprintf(ff->path, sizeof(ff->path), "g");
    ff->exists = true;
    ff->len = 6000;
    fx->fake.room = 1;
    send(fx, "b/mqb/cmd/get/r1/g", 0, true, "", 0);
    assert_false(mqb_engine_pump(&fx->engine, 1000));
    assert_int_equal(fx->fake.npubs, 1);
    fx->fake.room = 100;
    mqb_engine_pump(&fx->engine, 1000);
    assert_int_equal(fx->fake.npubs, 4);
}

int run_engine_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eval_single_and_multi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_dups_and_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_gap_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_original_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xget_window_and_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xput_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xput_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_one_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_startup_dups_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_room_throttles, setup, teardown),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
