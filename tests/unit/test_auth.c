// Unit tests of signed commands (core/auth.c) and of the engine's checks and signed replies,
// over a fake platform whose "signature" is a keyed checksum (the real one is OpenSSL's or
// mbedTLS's, exercised end to end).
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mqb/engine.h"
#include "tests.h"

#define PREFIX "b/1"

struct fk {
    struct mqb_auth auth;
    char topics[16][MQB_TOPIC_MAX];
    uint8_t payloads[16][256];
    size_t lens[16];
    int npubs;
    int evals;
    uint8_t board_pub[MQB_PUBKEY_LEN];
    uint64_t hsum[MQB_HASH_SLOTS];
};

static void fake_sig(const uint8_t *pub, const uint8_t *head, size_t hl, const uint8_t *data,
                     size_t dl, uint8_t sig[MQB_SIG_LEN]) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < MQB_PUBKEY_LEN; i++) {
        h = (h ^ pub[i]) * 1099511628211u;
    }
    for (size_t i = 0; i < hl; i++) {
        h = (h ^ head[i]) * 1099511628211u;
    }
    for (size_t i = 0; i < dl; i++) {
        h = (h ^ data[i]) * 1099511628211u;
    }
    for (size_t i = 0; i < MQB_SIG_LEN; i++) {
        sig[i] = (uint8_t)(h >> (8 * (i % 8)));
    }
}

static enum mqb_err f_publish(void *ctx, const char *topic, const uint8_t *p, size_t len) {
    struct fk *f = ctx;
    if (f->npubs < 16) {
        snprintf(f->topics[f->npubs], MQB_TOPIC_MAX, "%s", topic);
        memcpy(f->payloads[f->npubs], p, len < 256 ? len : 256);
        f->lens[f->npubs++] = len;
    }
    return MQB_OK;
}
static size_t f_room(void *ctx) {
    (void)ctx;
    return 8;
}
static enum mqb_err f_nofile(void *ctx, const char *path, int *fh, uint64_t *size) {
    (void)ctx, (void)path, (void)fh, (void)size;
    return MQB_ERR_NOENT;
}
static enum mqb_err f_nowrite(void *ctx, const char *path, int *fh) {
    (void)ctx, (void)path, (void)fh;
    return MQB_ERR_IO;
}
static enum mqb_err f_read(void *ctx, int fh, uint8_t *b, size_t c, size_t *n) {
    (void)ctx, (void)fh, (void)b, (void)c;
    *n = 0;
    return MQB_OK;
}
static enum mqb_err f_write(void *ctx, int fh, const uint8_t *b, size_t n) {
    (void)ctx, (void)fh, (void)b, (void)n;
    return MQB_OK;
}
static enum mqb_err f_close(void *ctx, int fh, bool commit) {
    (void)ctx, (void)fh, (void)commit;
    return MQB_OK;
}
static enum mqb_err f_hinit(void *ctx, unsigned slot) {
    ((struct fk *)ctx)->hsum[slot] = 0;
    return MQB_OK;
}
static enum mqb_err f_hupd(void *ctx, unsigned slot, const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        ((struct fk *)ctx)->hsum[slot] = ((struct fk *)ctx)->hsum[slot] * 31 + d[i];
    }
    return MQB_OK;
}
static enum mqb_err f_hfin(void *ctx, unsigned slot, uint8_t out[MQB_SHA256_LEN]) {
    memset(out, 0, MQB_SHA256_LEN);
    memcpy(out, &((struct fk *)ctx)->hsum[slot], 8);
    return MQB_OK;
}
static enum mqb_err f_eval(void *ctx, const char *id, const uint8_t *s, size_t n, bool first,
                           bool last) {
    (void)id, (void)s, (void)n, (void)first;
    ((struct fk *)ctx)->evals += last;
    return MQB_OK;
}
static void f_abort(void *ctx, const char *id) {
    (void)ctx, (void)id;
}
static enum mqb_err f_verify(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                             size_t hl, const uint8_t *d, size_t dl,
                             const uint8_t sig[MQB_SIG_LEN]) {
    (void)ctx;
    uint8_t want[MQB_SIG_LEN];
    fake_sig(pub, head, hl, d, dl, want);
    return memcmp(want, sig, MQB_SIG_LEN) == 0 ? MQB_OK : MQB_ERR_AUTH_SIG;
}
static enum mqb_err f_sign(void *ctx, const uint8_t *head, size_t hl, const uint8_t *d, size_t dl,
                           uint8_t sig[MQB_SIG_LEN]) {
    fake_sig(((struct fk *)ctx)->board_pub, head, hl, d, dl, sig);
    return MQB_OK;
}

static const struct mqb_platform plat = {
    .publish = f_publish,
    .out_room = f_room,
    .file_open_read = f_nofile,
    .file_open_write = f_nowrite,
    .file_read = f_read,
    .file_write = f_write,
    .file_close = f_close,
    .hash_init = f_hinit,
    .hash_update = f_hupd,
    .hash_final = f_hfin,
    .eval = f_eval,
    .eval_abort = f_abort,
    .sig_verify = f_verify,
    .sig_sign = f_sign,
};

static const uint8_t op_pub[MQB_PUBKEY_LEN] = {4, 1, 2, 3};
static const uint8_t op_id[MQB_KEYID_LEN] = {9, 9, 9, 9, 9, 9, 9, 9};
static const uint8_t boot[MQB_BOOTID_LEN] = {0xb0, 0x07};

// A command message as mqboard sends it: header, block, data; signed with pub.
static size_t command(uint8_t *out, const char *topic, uint16_t hdr, uint64_t counter,
                      const uint8_t *pub, const char *data) {
    struct mqb_auth_block b = {.counter = counter};
    memcpy(b.keyid, op_id, MQB_KEYID_LEN);
    memcpy(b.boot_id, boot, MQB_BOOTID_LEN);
    out[0] = (uint8_t)(hdr >> 8);
    out[1] = (uint8_t)hdr;
    uint8_t head[MQB_AUTH_HEAD_MAX];
    size_t hl = mqb_auth_cmd_head(head, sizeof(head), topic, out, &b);
    fake_sig(pub, head, hl, (const uint8_t *)data, strlen(data), b.sig);
    mqb_auth_block_encode(out + 2, &b);
    memcpy(out + 2 + MQB_AUTH_BLOCK_LEN, data, strlen(data));
    return 2 + MQB_AUTH_BLOCK_LEN + strlen(data);
}

static void setup(struct mqb_engine *e, struct fk *f) {
    memset(f, 0, sizeof(*f));
    f->board_pub[0] = 4;
    f->board_pub[1] = 0xbb;
    assert_int_equal(mqb_engine_init(e, &plat, f, PREFIX, "t"), MQB_OK);
    memcpy(f->auth.boot_id, boot, MQB_BOOTID_LEN);
    assert_int_equal(mqb_auth_add_key(&f->auth, op_id, op_pub), MQB_OK);
    mqb_engine_set_auth(e, &f->auth);
}

static void test_required_rule(void **state) {
    (void)state;
    struct mqb_hdr single = {MQB_SEQ_MASK, true}, first = {0, false}, mid = {5, false},
                   last = {6, true};
    assert_false(mqb_auth_required("ack", &single));
    assert_false(mqb_auth_required("caps", &single));
    assert_true(mqb_auth_required("eval", &mid));
    assert_true(mqb_auth_required("put", &mid));
    assert_true(mqb_auth_required("ota", &first));
    assert_false(mqb_auth_required("ota", &mid));
    assert_false(mqb_auth_required("ota", &last));
    assert_true(mqb_auth_required("xput", &first));
    assert_false(mqb_auth_required("xput", &mid));
    assert_true(mqb_auth_required("xput", &last));
    assert_true(mqb_auth_required("trust", &single));
}

static void test_replay_window(void **state) {
    (void)state;
    struct mqb_auth a = {0};
    struct mqb_auth_block b = {0};
    unsigned k;
    memcpy(b.keyid, op_id, MQB_KEYID_LEN);
    assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_ERR_AUTH_KEY);
    mqb_auth_add_key(&a, op_id, op_pub);
    b.boot_id[0] = 1;
    b.counter = 10;
    assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_ERR_AUTH_BOOT);
    b.boot_id[0] = 0;
    assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_OK);
    mqb_auth_record(&a, k, 10);
    assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_ERR_AUTH_REPLAY);
    // Out of order within the window is fine; once the window moved on, old ones are refused.
    b.counter = 5;
    assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_OK);
    for (uint64_t c = 100; c < 100 + MQB_AUTH_WINDOW; c++) {
        mqb_auth_record(&a, 0, c);
    }
    assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_ERR_AUTH_REPLAY);
    for (uint64_t c = 100; c < 100 + MQB_AUTH_WINDOW; c++) {
        b.counter = c;
        assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_ERR_AUTH_REPLAY);
    }
    b.counter = 100 + MQB_AUTH_WINDOW;
    assert_int_equal(mqb_auth_precheck(&a, &b, &k), MQB_OK);
}

static void test_engine_refuses_and_accepts(void **state) {
    (void)state;
    static struct mqb_engine e;
    struct fk f;
    setup(&e, &f);
    const char *t = PREFIX "/mqb/cmd/eval/abc";
    uint8_t m[512];
    // Unsigned: refused, unsigned reply, not run.
    assert_int_equal(mqb_engine_input(&e, t,
                                      (const uint8_t *)"\x80\x00"
                                                       "1",
                                      3, false, 0),
                     MQB_ERR_AUTH);
    assert_int_equal(f.evals, 0);
    assert_int_equal(f.npubs, 1);
    assert_memory_equal(f.payloads[0], "not authorized", 14);
    // Signed by the key: runs once; the same message again is a replay.
    size_t n = command(m, t, 0x8000, 42, op_pub, "1+1");
    assert_int_equal(mqb_engine_input(&e, t, m, n, false, 0), MQB_OK);
    assert_int_equal(f.evals, 1);
    assert_int_equal(mqb_engine_input(&e, t, m, n, false, 0), MQB_ERR_AUTH_REPLAY);
    // Another topic (another board, another id) with the same block: bad signature.
    const char *t2 = PREFIX "/mqb/cmd/eval/abd";
    n = command(m, t, 0x8000, 43, op_pub, "1+1");
    assert_int_equal(mqb_engine_input(&e, t2, m, n, false, 0), MQB_ERR_AUTH_SIG);
    // Changed data: bad signature.
    n = command(m, t, 0x8000, 44, op_pub, "1+1");
    m[n - 1] = '2';
    assert_int_equal(mqb_engine_input(&e, t, m, n, false, 0), MQB_ERR_AUTH_SIG);
    // Another key's signature with this key's id.
    static const uint8_t other[MQB_PUBKEY_LEN] = {4, 7};
    n = command(m, t, 0x8000, 45, other, "1+1");
    assert_int_equal(mqb_engine_input(&e, t, m, n, false, 0), MQB_ERR_AUTH_SIG);
    assert_int_equal(f.evals, 1);
    // caps needs no signature, and its reply carries none.
    f.npubs = 0;
    assert_int_equal(
        mqb_engine_input(&e, PREFIX "/mqb/cmd/caps/c1", (const uint8_t *)"\xff\xff", 2, false, 0),
        MQB_OK);
    assert_int_equal(f.npubs, 1);
    assert_memory_not_equal(f.payloads[0] + f.lens[0] - 4, MQB_AUTH_MAGIC, 4);
}

static void test_signed_replies_chain(void **state) {
    (void)state;
    static struct mqb_engine e;
    struct fk f;
    setup(&e, &f);
    uint8_t m[512];
    const char *t = PREFIX "/mqb/cmd/eval/abc";
    size_t n = command(m, t, 0x8000, 1, op_pub, "print(1)");
    assert_int_equal(mqb_engine_input(&e, t, m, n, false, 0), MQB_OK);
    mqb_engine_reply_out(&e, "abc", 0, false, (const uint8_t *)"out1", 4);
    mqb_engine_reply_out(&e, "abc", 1, true, (const uint8_t *)"end", 3);
    assert_int_equal(f.npubs, 2);
    assert_int_equal(f.lens[0], 2 + 4); // chained, unsigned
    assert_int_equal(f.lens[1], 2 + 3 + MQB_AUTH_TRAILER_LEN);
    assert_memory_equal(f.payloads[1] + f.lens[1] - 4, MQB_AUTH_MAGIC, 4);
    // The signature covers the chain of what came before: check it as the host does.
    uint8_t chain[32] = {0}, head[MQB_AUTH_HEAD_MAX], sig[MQB_SIG_LEN];
    uint64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        sum = sum * 31 + (uint8_t) "out1"[i];
    }
    memcpy(chain, &sum, 8);
    size_t hl = mqb_auth_reply_head(head, sizeof(head), f.topics[1], f.payloads[1], 2, chain);
    fake_sig(f.board_pub, head, hl, f.payloads[1] + 2, 3, sig);
    assert_memory_equal(sig, f.payloads[1] + 5, MQB_SIG_LEN);
    // An error reply is signed too.
    mqb_engine_reply_err(&e, "abc", "boom", 4);
    assert_int_equal(f.lens[2], 4 + MQB_AUTH_TRAILER_LEN);
}

// Fake key helpers: a key line "kN" is the point 04 N N ...; hashes and base64 are
// recognisable stand-ins (the real ones are the ports' crypto libraries).
static int fake_parse(void *ctx, const char *line, uint8_t pub[MQB_PUBKEY_LEN]) {
    (void)ctx;
    if (line[0] != 'k' || line[1] < '0' || line[1] > '9') {
        return -1;
    }
    memset(pub, line[1], MQB_PUBKEY_LEN);
    pub[0] = 4;
    return 0;
}

static void fake_sha256(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], uint8_t out[32]) {
    (void)ctx;
    memset(out, pub[1], 32);
}

static void fake_b64(void *ctx, const uint8_t *in, size_t n, char *out) {
    (void)ctx;
    size_t digits = 4 * ((n + 2) / 3);
    memset(out, 'A' + in[0] % 26, digits);
    out[digits - 1] = '=';
    out[digits] = '\0';
}

static enum mqb_trust_result trust(struct mqb_auth *a, const char *arg, char *out, size_t cap) {
    static const struct mqb_auth_keyops ops = {NULL, fake_parse, fake_sha256, fake_b64};
    return mqb_auth_trust(a, &ops, arg, strlen(arg), out, cap);
}

static void test_trust_command(void **state) {
    (void)state;
    struct mqb_auth a = {0};
    char out[512], fpr1[MQB_FPR_LEN];
    assert_int_equal(trust(&a, "add k1", out, sizeof(out)), MQB_TRUST_CHANGED);
    assert_int_equal(a.nkeys, 1);
    assert_int_equal(a.keys[0].id[0], '1'); // the first bytes of the point's hash
    assert_true(strncmp(out, "authorized: SHA256:", 19) == 0);
    memcpy(fpr1, out + 12, MQB_FPR_LEN);
    assert_int_equal(strlen(fpr1), MQB_FPR_LEN - 1); // 43 digits, no padding
    assert_int_equal(trust(&a, "add k1", out, sizeof(out)), MQB_TRUST_ANSWERED);
    assert_true(strncmp(out, "already authorized: ", 20) == 0);
    assert_int_equal(trust(&a, "add nonsense-that-is-not-a-key", out, sizeof(out)),
                     MQB_TRUST_FAILED);
    assert_string_equal(out, "not a public key: nonsense-that-is-not-a-key");
    // The last key is never removed: the board would obey anyone.
    assert_int_equal(trust(&a, "remove k1", out, sizeof(out)), MQB_TRUST_FAILED);
    assert_true(strstr(out, "refusing to remove the last") != NULL);
    assert_int_equal(trust(&a, "add k2", out, sizeof(out)), MQB_TRUST_CHANGED);
    assert_int_equal(trust(&a, "list", out, sizeof(out)), MQB_TRUST_ANSWERED);
    assert_int_equal(strlen(out), 2 * MQB_FPR_LEN); // two lines
    char by_fpr[80];
    snprintf(by_fpr, sizeof(by_fpr), "remove %s", fpr1);
    assert_int_equal(trust(&a, by_fpr, out, sizeof(out)), MQB_TRUST_CHANGED);
    assert_int_equal(a.nkeys, 1);
    assert_int_equal(a.keys[0].pub[1], '2');
    assert_int_equal(trust(&a, "remove k7", out, sizeof(out)), MQB_TRUST_FAILED);
    assert_string_equal(out, "no such authorized key: k7");
    for (int i = 3; i < 3 + MQB_AUTH_KEYS_MAX - 1; i++) {
        char add[8] = "add k0";
        add[5] = (char)('0' + i % 10);
        trust(&a, add, out, sizeof(out));
    }
    assert_int_equal(a.nkeys, MQB_AUTH_KEYS_MAX);
    assert_int_equal(trust(&a, "add k0", out, sizeof(out)), MQB_TRUST_FAILED);
    assert_true(strstr(out, "remove one first") != NULL);
    assert_int_equal(trust(&a, "drop k2", out, sizeof(out)), MQB_TRUST_FAILED);
    assert_int_equal(trust(&a, "add", out, sizeof(out)), MQB_TRUST_FAILED);
    char big[400];
    memset(big, 'x', sizeof(big));
    assert_int_equal(
        mqb_auth_trust(&a, &(struct mqb_auth_keyops){NULL, fake_parse, fake_sha256, fake_b64}, big,
                       sizeof(big), out, sizeof(out)),
        MQB_TRUST_FAILED);
    assert_string_equal(out, "trust: argument too long");
}

// The fake release signature holds when its first byte is the key's second.
static bool fake_verify(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                        size_t hlen, const uint8_t sig[MQB_SIG_LEN]) {
    (void)ctx;
    (void)head;
    assert_int_equal(hlen, 12 + 32 + 8); // domain, hash, version
    return sig[0] == pub[1];
}

static enum mqb_err image(const char *extra, uint64_t recorded, uint64_t *version) {
    static uint8_t pubs[2][MQB_PUBKEY_LEN] = {{4, 0xaa}, {4, 0xbb}};
    uint8_t sha[32] = {0};
    return mqb_auth_image_check((const uint8_t(*)[MQB_PUBKEY_LEN])pubs, 2, sha, extra, recorded,
                                fake_verify, NULL, version);
}

static void test_release_rule(void **state) {
    (void)state;
    char bb[200], cc[200];
    char sig_bb[129], sig_cc[129];
    memset(sig_bb, '0', 128);
    memset(sig_cc, '0', 128);
    sig_bb[128] = sig_cc[128] = '\0';
    memcpy(sig_bb, "bb", 2);
    memcpy(sig_cc, "cc", 2);
    snprintf(bb, sizeof(bb), "/7/%s", sig_bb);
    snprintf(cc, sizeof(cc), "/7/%s", sig_cc);
    uint64_t v = 0;
    assert_int_equal(image(bb, 5, &v), MQB_OK); // the second release key signed it
    assert_int_equal(v, 7);
    assert_int_equal(image(cc, 5, &v), MQB_ERR_IMAGE_SIG);
    assert_int_equal(image("", 5, &v), MQB_ERR_IMAGE_UNSIGNED);
    assert_int_equal(v, 5);
    assert_int_equal(image("/7", 5, &v), MQB_ERR_IMAGE_UNSIGNED);
    assert_int_equal(image("/x/00", 5, &v), MQB_ERR_IMAGE_UNSIGNED);
    assert_int_equal(image(bb, 9, &v), MQB_ERR_DOWNGRADE); // below what the board recorded
    char tail[220];
    snprintf(tail, sizeof(tail), "/3/%s/downgrade", sig_bb); // asked for: accepted
    assert_int_equal(image(tail, 9, &v), MQB_OK);
    assert_int_equal(v, 3);
    snprintf(tail, sizeof(tail), "/3/%s/other", sig_bb);
    assert_int_equal(image(tail, 9, &v), MQB_ERR_IMAGE_UNSIGNED);
    // Without release keys any image goes (its hash was checked).
    uint8_t sha[32] = {0};
    assert_int_equal(mqb_auth_image_check(NULL, 0, sha, "", 5, fake_verify, NULL, &v), MQB_OK);
    assert_int_equal(v, 5);
}

int run_auth_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required_rule),
        cmocka_unit_test(test_replay_window),
        cmocka_unit_test(test_engine_refuses_and_accepts),
        cmocka_unit_test(test_signed_replies_chain),
        cmocka_unit_test(test_trust_command),
        cmocka_unit_test(test_release_rule),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
