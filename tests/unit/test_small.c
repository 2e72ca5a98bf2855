// The engine built for a microcontroller (the MicroPython module's limits, and the smallest
// chunk the original protocol allows): the original get never reads more than the chunk
// buffer holds, limits in error texts are this build's, and a publish that fails ends the
// stream with an error instead of leaving a hole. A binary of its own (unit_tests_small),
// compiled with -DMQB_CHUNK_MAX=1400 -DMQB_MAX_XFERS=2 -DMQB_PATH_MAX=128.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mqb/engine.h"

struct small {
    uint8_t file[5000];
    size_t pos;
    char err[256]; // the last reply/err text
    size_t data;   // reply/out data bytes received
    size_t most;   // the largest reply/out message
    int fail_at;   // the index of the one publish that fails (-1: none)
    int pubs;
    bool last_seen;
};

static enum mqb_err s_publish(void *ctx, const char *topic, const uint8_t *p, size_t len) {
    struct small *s = ctx;
    if (s->pubs++ == s->fail_at) {
        return MQB_ERR_IO;
    }
    if (strstr(topic, "/reply/err/") != NULL) {
        snprintf(s->err, sizeof(s->err), "%.*s", (int)len, (const char *)p);
    } else {
        s->data += len - MQB_HDR_LEN;
        s->most = len > s->most ? len : s->most;
        s->last_seen |= (p[0] & 0x80) != 0;
    }
    return MQB_OK;
}
static size_t s_room(void *ctx) {
    (void)ctx;
    return 8;
}
static enum mqb_err s_open_read(void *ctx, const char *path, int *fh, uint64_t *size) {
    struct small *s = ctx;
    (void)path;
    s->pos = 0;
    *fh = 0;
    *size = sizeof(s->file);
    return MQB_OK;
}
static enum mqb_err s_read(void *ctx, int fh, uint8_t *buf, size_t cap, size_t *n) {
    struct small *s = ctx;
    (void)fh;
    size_t left = sizeof(s->file) - s->pos;
    *n = left < cap ? left : cap;
    memcpy(buf, s->file + s->pos, *n);
    s->pos += *n;
    return MQB_OK;
}
static enum mqb_err s_close(void *ctx, int fh, bool commit) {
    (void)ctx;
    (void)fh;
    (void)commit;
    return MQB_OK;
}

static const struct mqb_platform small_plat = {
    .publish = s_publish,
    .out_room = s_room,
    .file_open_read = s_open_read,
    .file_read = s_read,
    .file_close = s_close,
};

static void get_file(struct mqb_engine *e) {
    static const uint8_t req[] = {0x80, 0x00};
    mqb_engine_input(e, "b/mqb/cmd/get/G1/f.bin", req, sizeof(req), false, 1);
    for (int i = 0; i < 100 && mqb_engine_busy(e) > 0; i++) {
        mqb_engine_pump(e, 2);
    }
}

static void test_original_get_fits_the_chunk(void **state) {
    (void)state;
    static struct mqb_engine e;
    struct small s = {.fail_at = -1};
    mqb_engine_init(&e, &small_plat, &s, "b", "small");
    get_file(&e);
    assert_int_equal(s.data, sizeof(s.file));
    assert_true(s.last_seen);
    assert_true(s.most <= MQB_HDR_LEN + MQB_CHUNK_MAX);
}

static void test_limits_in_error_texts(void **state) {
    (void)state;
    static struct mqb_engine e;
    struct small s = {.fail_at = -1};
    mqb_engine_init(&e, &small_plat, &s, "b", "small");
    char topic[400];
    memset(topic, 0, sizeof(topic));
    strcpy(topic, "b/mqb/cmd/get/G2/");
    memset(topic + strlen(topic), 'p', 200);
    static const uint8_t req[] = {0x80, 0x00};
    mqb_engine_input(&e, topic, req, sizeof(req), false, 1);
    assert_non_null(strstr(s.err, "(128 bytes)"));
    static uint8_t big[MQB_HDR_LEN + MQB_CHUNK_MAX + 1] = {0x80, 0x00};
    mqb_engine_input(&e, "b/mqb/cmd/eval/E1", big, sizeof(big), false, 1);
    assert_non_null(strstr(s.err, "at most 1400 data bytes"));
}

static void test_failed_publish_fails_the_stream(void **state) {
    (void)state;
    static struct mqb_engine e;
    struct small s = {.fail_at = 1}; // the second chunk cannot be published
    mqb_engine_init(&e, &small_plat, &s, "b", "small");
    get_file(&e);
    assert_int_equal(mqb_engine_busy(&e), 0);
    assert_false(s.last_seen); // no "complete" file with a hole in it
    assert_non_null(strstr(s.err, "I/O error"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_original_get_fits_the_chunk),
        cmocka_unit_test(test_limits_in_error_texts),
        cmocka_unit_test(test_failed_publish_fails_the_stream),
    };
    return cmocka_run_group_tests_name("engine at a small config", tests, NULL, NULL);
}
