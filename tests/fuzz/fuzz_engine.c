// libFuzzer target: the device-side engine over an in-memory platform. The input is a
// sequence of messages: a byte that picks a command topic (or takes a raw topic from the
// input), a byte of payload length, the payload; time advances between them. The engine
// must never crash, read or write out of bounds, or leave a file handle behind.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mqb/engine.h"

#define NFILES 4
#define FILE_CAP 8192

struct fake {
    struct {
        char path[MQB_PATH_MAX + 1];
        uint8_t data[FILE_CAP];
        size_t len, pos;
        bool used, open;
    } f[NFILES];
    size_t room;
};

static enum mqb_err p_publish(void *ctx, const char *t, const uint8_t *p, size_t len) {
    (void)ctx;
    (void)t;
    (void)p;
    (void)len;
    return MQB_OK;
}
static size_t p_room(void *ctx) {
    return ((struct fake *)ctx)->room;
}
static int find(struct fake *f, const char *path, bool create) {
    for (int i = 0; i < NFILES; i++) {
        if (f->f[i].used && strcmp(f->f[i].path, path) == 0) {
            return i;
        }
    }
    for (int i = 0; create && i < NFILES; i++) {
        if (!f->f[i].used) {
            f->f[i].used = true;
            snprintf(f->f[i].path, sizeof(f->f[i].path), "%s", path);
            return i;
        }
    }
    return -1;
}
static enum mqb_err p_open_read(void *ctx, const char *path, int *fh, uint64_t *size) {
    struct fake *f = ctx;
    int i = find(f, path, false);
    if (i < 0 || f->f[i].open) {
        return i < 0 ? MQB_ERR_NOENT : MQB_ERR_BUSY;
    }
    f->f[i].open = true;
    f->f[i].pos = 0;
    *fh = i;
    *size = f->f[i].len;
    return MQB_OK;
}
static enum mqb_err p_open_write(void *ctx, const char *path, int *fh) {
    struct fake *f = ctx;
    int i = find(f, path, true);
    if (i < 0 || f->f[i].open) {
        return MQB_ERR_BUSY;
    }
    f->f[i].open = true;
    f->f[i].len = 0;
    *fh = i;
    return MQB_OK;
}
static enum mqb_err p_read(void *ctx, int fh, uint8_t *buf, size_t cap, size_t *n) {
    struct fake *f = ctx;
    size_t left = f->f[fh].len - f->f[fh].pos;
    *n = left < cap ? left : cap;
    memcpy(buf, f->f[fh].data + f->f[fh].pos, *n);
    f->f[fh].pos += *n;
    return MQB_OK;
}
static enum mqb_err p_write(void *ctx, int fh, const uint8_t *buf, size_t len) {
    struct fake *f = ctx;
    if (fh >= NFILES) {
        return MQB_OK; // the OTA handle
    }
    if (f->f[fh].len + len > FILE_CAP) {
        return MQB_ERR_NOSPC;
    }
    memcpy(f->f[fh].data + f->f[fh].len, buf, len);
    f->f[fh].len += len;
    return MQB_OK;
}
static enum mqb_err p_close(void *ctx, int fh, bool commit) {
    struct fake *f = ctx;
    (void)commit;
    if (fh < 0 || fh >= NFILES || !f->f[fh].open) {
        __builtin_trap(); // the engine closed what it did not open
    }
    f->f[fh].open = false;
    return MQB_OK;
}
static enum mqb_err p_hash_init(void *ctx, unsigned slot) {
    (void)ctx;
    return slot < MQB_HASH_SLOTS ? MQB_OK : MQB_ERR_STATE;
}
static enum mqb_err p_hash_update(void *ctx, unsigned slot, const uint8_t *d, size_t len) {
    (void)ctx;
    (void)d;
    (void)len;
    return slot < MQB_HASH_SLOTS ? MQB_OK : MQB_ERR_STATE;
}
static enum mqb_err p_hash_final(void *ctx, unsigned slot, uint8_t out[MQB_SHA256_LEN]) {
    (void)ctx;
    memset(out, 0, MQB_SHA256_LEN);
    return slot < MQB_HASH_SLOTS ? MQB_OK : MQB_ERR_STATE;
}
static enum mqb_err p_eval(void *ctx, const char *id, const uint8_t *src, size_t len, bool first,
                           bool last) {
    (void)ctx;
    (void)id;
    (void)src;
    (void)len;
    (void)first;
    (void)last;
    return MQB_OK;
}
static void p_eval_abort(void *ctx, const char *id) {
    (void)ctx;
    (void)id;
}
static enum mqb_err p_ota_open(void *ctx, int *fh) {
    (void)ctx;
    *fh = NFILES;
    return MQB_OK;
}
static enum mqb_err p_ota_close(void *ctx, int fh, bool commit) {
    (void)ctx;
    (void)fh;
    (void)commit;
    return MQB_OK;
}

static const struct mqb_platform plat = {
    .publish = p_publish,
    .out_room = p_room,
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
};

static const char *const topics[] = {
    "demo/board/mqb/cmd/put/A/f.txt", "demo/board/mqb/cmd/xput/B/g.txt",
    "demo/board/mqb/cmd/get/C/f.txt", "demo/board/mqb/cmd/xget/D/g.txt",
    "demo/board/mqb/cmd/eval/E",      "demo/board/mqb/cmd/ack/D",
    "demo/board/mqb/cmd/caps/F",      "demo/board/mqb/cmd/ota/G/" /* + a hash */,
    "demo/board/mqb/cmd/frob/H",      "demo/board/mqb/cmd/put/A//../x",
};
#define NTOPICS (sizeof(topics) / sizeof(topics[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fake f;
    static struct mqb_engine e;
    memset(&f, 0, sizeof(f));
    f.room = 8;
    mqb_engine_init(&e, &plat, &f, "demo/board", "fuzz 0");
    uint64_t now = 1;
    char topic[MQB_TOPIC_MAX + 16];
    for (size_t i = 0; i + 2 <= size;) {
        uint8_t pick = data[i], len = data[i + 1];
        i += 2;
        size_t n = len < size - i ? len : size - i;
        if (pick % (NTOPICS + 1) == NTOPICS) { // a raw topic: the payload up to a NUL
            const uint8_t *nul = memchr(data + i, 0, n);
            size_t tl = nul != NULL ? (size_t)(nul - data - i) : n;
            tl = tl < MQB_TOPIC_MAX ? tl : MQB_TOPIC_MAX;
            memcpy(topic, data + i, tl);
            topic[tl] = '\0';
        } else if (pick % (NTOPICS + 1) == 7) {
            snprintf(topic, sizeof(topic), "%s%064d", topics[7], pick);
        } else {
            snprintf(topic, sizeof(topic), "%s", topics[pick % (NTOPICS + 1)]);
        }
        (void)mqb_engine_input(&e, topic, data + i, n, pick & 0x80, now);
        i += n;
        now += (uint64_t)(pick & 0x3f) * 1000;
        f.room = pick & 0x40 ? 0 : 8;
        while (mqb_engine_pump(&e, now) && f.room > 0) {
        }
    }
    mqb_engine_deinit(&e);
    for (int k = 0; k < NFILES; k++) {
        if (f.f[k].open) {
            __builtin_trap(); // a handle left open after deinit
        }
    }
    return 0;
}
