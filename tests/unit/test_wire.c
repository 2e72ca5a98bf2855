// Unit tests of the wire codec: header, topics and sequence rules, table-driven, plus the
// golden vectors of tests/vectors/messages.txt.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqb/wire.h"
#include "tests.h"

static void test_header_table(void **state) {
    (void)state;
    static const struct {
        uint16_t seq;
        bool last;
        uint8_t bytes[2];
    } rows[] = {
        {0, false, {0x00, 0x00}},      {0, true, {0x80, 0x00}},       {1, false, {0x00, 0x01}},
        {0x7FFF, true, {0xFF, 0xFF}},  {0x7FFF, false, {0x7F, 0xFF}}, {0x1234, true, {0x92, 0x34}},
        {0x8001, false, {0x00, 0x01}}, // seq is taken modulo 2^15
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint8_t out[2];
        struct mqb_hdr h;
        mqb_hdr_encode(out, rows[i].seq, rows[i].last);
        assert_memory_equal(out, rows[i].bytes, 2);
        assert_int_equal(mqb_hdr_decode(out, 2, &h), MQB_OK);
        assert_int_equal(h.seq, rows[i].seq & 0x7FFF);
        assert_int_equal(h.last, rows[i].last);
    }
}

static void test_header_short(void **state) {
    (void)state;
    struct mqb_hdr h;
    uint8_t one = 0x80;
    assert_int_equal(mqb_hdr_decode(&one, 1, &h), MQB_ERR_MALFORMED);
    assert_int_equal(mqb_hdr_decode(&one, 0, &h), MQB_ERR_MALFORMED);
    assert_int_equal(mqb_hdr_decode(NULL, 2, &h), MQB_ERR_MALFORMED);
}

static void check_topic(const char *prefix, const char *topic, enum mqb_err want,
                        enum mqb_topic_kind kind, const char *cmd, const char *id,
                        const char *tail) {
    struct mqb_topic t;
    enum mqb_err err = mqb_topic_parse(prefix, topic, strlen(topic), &t);
    if (err != want) {
        fail_msg("topic '%s': got %d want %d", topic, err, want);
    }
    if (want != MQB_OK) {
        return;
    }
    assert_int_equal(t.kind, kind);
    assert_int_equal(t.cmd.len, strlen(cmd));
    assert_memory_equal(t.cmd.ptr, cmd, t.cmd.len);
    assert_int_equal(t.id.len, strlen(id));
    assert_memory_equal(t.id.ptr, id, t.id.len);
    assert_int_equal(t.tail.len, strlen(tail));
    assert_memory_equal(t.tail.ptr, tail, t.tail.len);
}

static void test_topic_parse_table(void **state) {
    (void)state;
    const enum mqb_err ok = MQB_OK, bad = MQB_ERR_MALFORMED;
    const enum mqb_topic_kind C = MQB_TOPIC_CMD, O = MQB_TOPIC_REPLY_OUT, E = MQB_TOPIC_REPLY_ERR;
    check_topic("a/b", "a/b/mqb/cmd/eval/X1", ok, C, "eval", "X1", "");
    check_topic("a/b", "a/b/mqb/cmd/eval/X1/", ok, C, "eval", "X1", "");
    check_topic("a/b", "a/b/mqb/cmd/put/X1/dir/f.py", ok, C, "put", "X1", "dir/f.py");
    check_topic("a/b", "a/b/mqb/cmd/put/X1//abs", ok, C, "put", "X1", "/abs");
    check_topic("a/b", "a/b/mqb/reply/out/X1", ok, O, "", "X1", "");
    check_topic("a/b", "a/b/mqb/reply/err/X1", ok, E, "", "X1", "");
    check_topic("a/b", "a/b/mqb/reply/busy/X1", ok, MQB_TOPIC_REPLY_BUSY, "", "X1", "");
    check_topic("a/b", "a/b/mqb/reply/ask/X1", ok, MQB_TOPIC_REPLY_ASK, "", "X1", "");
    check_topic("a/b", "a/b/mqb/reply/reset/X1", ok, MQB_TOPIC_REPLY_RESET, "", "X1", "");
    check_topic("a/b", "a/b/mqb/reply/foo/X1", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/reply/out/X1/more", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/reply/out/", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/cmd/eval", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/cmd/eval/", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/cmd//X1", bad, C, "", "", "");
    check_topic("a/b", "a/c/mqb/cmd/eval/X1", bad, C, "", "", "");
    check_topic("a/b", "a/bb/mqb/cmd/eval/X1", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqx/cmd/eval/X1", bad, C, "", "", "");
    check_topic("a/b", "a/b", bad, C, "", "", "");
    check_topic("a/b", "", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/cmd/averyveryverylongcmdname/X1", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/cmd/eval/0123456789012345678901234567890123", bad, C, "", "", "");
    check_topic("a/b", "a/b/mqb/cmd/ev+l/X1", bad, C, "", "", "");
}

static void test_topic_long_tail(void **state) {
    (void)state;
    char topic[MQB_PATH_MAX + 64];
    int n = snprintf(topic, sizeof(topic), "p/mqb/cmd/put/i/");
    memset(topic + n, 'a', MQB_PATH_MAX + 1);
    topic[n + MQB_PATH_MAX + 1] = '\0';
    struct mqb_topic t;
    assert_int_equal(mqb_topic_parse("p", topic, strlen(topic), &t), MQB_ERR_TOOBIG);
    assert_int_equal(t.id.len, 1); // the id is known, so the sender can be told
    topic[n + MQB_PATH_MAX] = '\0';
    assert_int_equal(mqb_topic_parse("p", topic, strlen(topic), &t), MQB_OK);
}

static void test_id_deadline(void **state) {
    (void)state;
    assert_int_equal(mqb_id_deadline("Ab3dE6gH.6744a2f0"), 0x6744a2f0u);
    assert_int_equal(mqb_id_deadline("x.ffffffff"), 0xffffffffu);
    assert_int_equal(mqb_id_deadline("Ab3dE6gH"), 0);          // the original's ids: none
    assert_int_equal(mqb_id_deadline("Ab3dE6gH.6744A2F0"), 0); // lower-case hex only
    assert_int_equal(mqb_id_deadline("Ab3dE6gH.6744a2f"), 0);
    assert_int_equal(mqb_id_deadline(".6744a2f0"), 0);
    assert_int_equal(mqb_id_deadline("Ab3dE6gH-6744a2f0"), 0);
    assert_int_equal(mqb_id_deadline(""), 0);
}

static void test_topic_build(void **state) {
    (void)state;
    char buf[64];
    assert_int_equal(mqb_topic_cmd(buf, sizeof(buf), "a/b", "get", "id1", "x/y"), MQB_OK);
    assert_string_equal(buf, "a/b/mqb/cmd/get/id1/x/y");
    assert_int_equal(mqb_topic_cmd(buf, sizeof(buf), "a/b", "eval", "id1", NULL), MQB_OK);
    assert_string_equal(buf, "a/b/mqb/cmd/eval/id1");
    assert_int_equal(mqb_topic_reply(buf, sizeof(buf), "a/b", true, "id1"), MQB_OK);
    assert_string_equal(buf, "a/b/mqb/reply/err/id1");
    assert_int_equal(mqb_topic_reply(buf, 21, "a/b", false, "id1"), MQB_ERR_NOSPACE);
    assert_int_equal(mqb_topic_reply(buf, 22, "a/b", false, "id1"), MQB_OK);
    assert_int_equal(mqb_topic_cmd(buf, 5, "a/b", "get", "id1", NULL), MQB_ERR_NOSPACE);
}

static void test_seq_rules(void **state) {
    (void)state;
    // Each row: the seq of the next message and what the receiver must say.
    static const struct {
        uint16_t seq;
        bool last;
        enum mqb_err want;
    } rows[] = {
        {0, false, MQB_OK},      {0, false, MQB_ERR_DUP}, {1, false, MQB_OK},
        {1, false, MQB_ERR_DUP}, {0, false, MQB_ERR_DUP}, {3, false, MQB_ERR_GAP},
        {2, false, MQB_OK},      {3, true, MQB_OK},       {3, true, MQB_ERR_DUP},
        {4, false, MQB_ERR_DUP},
    };
    struct mqb_seq s;
    mqb_seq_init(&s);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mqb_hdr h = {rows[i].seq, rows[i].last};
        if (mqb_seq_check(&s, &h) != rows[i].want) {
            fail_msg("row %zu: seq %u", i, rows[i].seq);
        }
    }
}

static void test_seq_wraps(void **state) {
    (void)state;
    struct mqb_seq s;
    mqb_seq_init(&s);
    for (uint32_t i = 0; i < 70000; i++) {
        struct mqb_hdr h = {(uint16_t)(i & 0x7FFF), false};
        assert_int_equal(mqb_seq_check(&s, &h), MQB_OK);
    }
    struct mqb_hdr old = {(uint16_t)((70000 - 5) & 0x7FFF), false};
    assert_int_equal(mqb_seq_check(&s, &old), MQB_ERR_DUP);
}

static int unhex(const char *s, uint8_t *out, size_t cap) {
    size_t n = strlen(s) / 2;
    if (n > cap) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return (int)n;
}

static void test_golden_vectors(void **state) {
    (void)state;
    FILE *f = fopen(MQB_VECTORS_DIR "/messages.txt", "r");
    assert_non_null(f);
    char line[1024];
    int count = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n') {
            continue;
        }
        line[strcspn(line, "\n")] = '\0';
        char *field[9];
        char *p = line;
        for (int i = 0; i < 9; i++) {
            field[i] = strsep(&p, "|");
            assert_non_null(field[i]);
        }
        // The prefix is everything before "/mqb/".
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "%.*s", (int)(strstr(field[1], "/mqb/") - field[1]),
                 field[1]);
        enum mqb_topic_kind kind = strcmp(field[3], "cmd") == 0   ? MQB_TOPIC_CMD
                                   : strcmp(field[3], "out") == 0 ? MQB_TOPIC_REPLY_OUT
                                                                  : MQB_TOPIC_REPLY_ERR;
        check_topic(prefix, field[1], MQB_OK, kind, field[4], field[5], field[6]);
        uint8_t payload[512];
        int n = unhex(field[2], payload, sizeof(payload));
        assert_true(n >= 0);
        if (kind != MQB_TOPIC_REPLY_ERR) {
            struct mqb_hdr h;
            assert_int_equal(mqb_hdr_decode(payload, (size_t)n, &h), MQB_OK);
            assert_int_equal(h.seq, atoi(field[7]));
            assert_int_equal(h.last, atoi(field[8]));
            uint8_t again[2];
            mqb_hdr_encode(again, h.seq, h.last);
            assert_memory_equal(again, payload, 2);
        }
        // Building the topic back gives the same bytes.
        char built[MQB_TOPIC_MAX];
        if (kind == MQB_TOPIC_CMD) {
            mqb_topic_cmd(built, sizeof(built), prefix, field[4], field[5],
                          field[6][0] != '\0' || field[1][strlen(field[1]) - 1] == '/' ? field[6]
                                                                                       : NULL);
        } else {
            mqb_topic_reply(built, sizeof(built), prefix, kind == MQB_TOPIC_REPLY_ERR, field[5]);
        }
        assert_string_equal(built, field[1]);
        count++;
    }
    fclose(f);
    assert_true(count >= 10);
}

int run_wire_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_table),      cmocka_unit_test(test_header_short),
        cmocka_unit_test(test_topic_parse_table), cmocka_unit_test(test_topic_long_tail),
        cmocka_unit_test(test_topic_build),       cmocka_unit_test(test_seq_rules),
        cmocka_unit_test(test_seq_wraps),         cmocka_unit_test(test_golden_vectors),
        cmocka_unit_test(test_id_deadline),
    };
    return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
