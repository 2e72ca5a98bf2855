// Unit tests of the watchdog state machine and the boot decisions: the safe-mode rule, the
// boot-state record (two copies, seq, CRC) under damage and torn writes, and the OTA life
// cycle new -> pending -> valid / aborted -> rollback.
#include <stdbool.h>
#include <string.h>

#include "mqb/boot.h"
#include "mqb/wdt.h"
#include "tests.h"

static void assert_same(const struct mqb_boot_state *a, const struct mqb_boot_state *b) {
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->slot, b->slot);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->prev, b->prev);
}

static void test_safe_mode_rule(void **state) {
    (void)state;
    static const struct {
        uint8_t mem[6];
        size_t len;
        enum mqb_boot_mode want;
    } rows[] = {
        {{0}, 0, MQB_BOOT_NORMAL},                            // power-on: empty memory
        {{0x0D, 0xF0, 0xEF, 0xBE}, 4, MQB_BOOT_NORMAL},       // the magic
        {{0x0D, 0xF0, 0xEF, 0xBE, 1, 2}, 6, MQB_BOOT_NORMAL}, // the magic, more data
        {{0, 0, 0, 0}, 4, MQB_BOOT_SAFE},                     // cleared, never earned back
        {{0xBE, 0xEF, 0xF0, 0x0D}, 4, MQB_BOOT_SAFE},         // wrong byte order
        {{0x0D, 0xF0, 0xEF}, 3, MQB_BOOT_SAFE},               // too short
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(mqb_boot_mode(rows[i].mem, rows[i].len), rows[i].want);
    }
    assert_int_equal(mqb_boot_mode(mqb_rtc_cleared, 4), MQB_BOOT_SAFE);
}

static void test_crc32(void **state) {
    (void)state;
    assert_int_equal(mqb_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
}

static void test_otadata_roundtrip_and_damage(void **state) {
    (void)state;
    struct mqb_boot_state s = {.seq = 7, .slot = 1, .state = MQB_OTA_PENDING, .prev = 0}, out;
    uint8_t buf[MQB_OTADATA_LEN];
    mqb_otadata_encode(&s, buf);
    assert_int_equal(mqb_otadata_decode(buf, sizeof(buf), &out), MQB_OK);
    assert_same(&s, &out);
    assert_int_equal(mqb_otadata_decode(buf, sizeof(buf) - 1, &out), MQB_ERR_MALFORMED);
    for (size_t i = 0; i < sizeof(buf); i++) {
        uint8_t bad[MQB_OTADATA_LEN];
        memcpy(bad, buf, sizeof(bad));
        bad[i] ^= 0x40; // any flipped bit is caught by the magic or the CRC
        assert_int_equal(mqb_otadata_decode(bad, sizeof(bad), &out), MQB_ERR_MALFORMED);
    }
}

static void test_otadata_select(void **state) {
    (void)state;
    struct mqb_boot_state a = {.seq = 5, .slot = 0, .state = MQB_OTA_VALID, .prev = 0};
    struct mqb_boot_state b = {.seq = 6, .slot = 1, .state = MQB_OTA_NEW, .prev = 0}, out;
    uint8_t ca[MQB_OTADATA_LEN], cb[MQB_OTADATA_LEN], zero[MQB_OTADATA_LEN] = {0};
    int newer;
    mqb_otadata_encode(&a, ca);
    mqb_otadata_encode(&b, cb);
    assert_int_equal(mqb_otadata_select(ca, 16, cb, 16, &out, &newer), MQB_OK);
    assert_int_equal(out.seq, 6);
    assert_int_equal(newer, 1);
    assert_int_equal(mqb_otadata_select(ca, 16, zero, 16, &out, &newer), MQB_OK);
    assert_int_equal(out.seq, 5);
    assert_int_equal(newer, 0);
    assert_int_equal(mqb_otadata_select(ca, 16, cb, 9, &out, &newer), MQB_OK); // truncated
    assert_int_equal(out.seq, 5);
    assert_int_equal(mqb_otadata_select(zero, 16, NULL, 0, &out, &newer), MQB_ERR_NOENT);
    // Sequence numbers wrap.
    a.seq = 0xFFFFFFFFu;
    b.seq = 0;
    mqb_otadata_encode(&a, ca);
    mqb_otadata_encode(&b, cb);
    mqb_otadata_select(ca, 16, cb, 16, &out, &newer);
    assert_int_equal(newer, 1);
}

// A write torn at any byte leaves either the old or the new record chosen, never garbage.
static void test_torn_write(void **state) {
    (void)state;
    struct mqb_boot_state committed = {.seq = 10, .slot = 0, .state = MQB_OTA_VALID, .prev = 1};
    struct mqb_boot_state older = {.seq = 9, .slot = 1, .state = MQB_OTA_ABORTED, .prev = 0};
    struct mqb_boot_state next = committed, out;
    mqb_ota_activate(&next, 1);
    uint8_t keep[MQB_OTADATA_LEN], old[MQB_OTADATA_LEN], neu[MQB_OTADATA_LEN];
    mqb_otadata_encode(&committed, keep);
    mqb_otadata_encode(&older, old);
    mqb_otadata_encode(&next, neu);
    for (size_t k = 0; k <= MQB_OTADATA_LEN; k++) {
        uint8_t torn[MQB_OTADATA_LEN];
        memcpy(torn, old, sizeof(torn));
        memcpy(torn, neu, k); // the write stopped after k bytes
        int newer;
        assert_int_equal(mqb_otadata_select(keep, 16, torn, 16, &out, &newer), MQB_OK);
        if (k < MQB_OTADATA_LEN) {
            assert_same(&out, &committed);
        } else {
            assert_same(&out, &next);
        }
    }
}

static void test_ota_life_cycle(void **state) {
    (void)state;
    struct mqb_boot_state s = {.seq = 1, .slot = 0, .state = MQB_OTA_VALID, .prev = 0};
    bool changed;
    assert_int_equal(mqb_ota_boot(&s, &changed), 0);
    assert_false(changed);
    mqb_ota_activate(&s, 1);
    assert_int_equal(s.state, MQB_OTA_NEW);
    assert_int_equal(mqb_ota_boot(&s, &changed), 1); // its one boot
    assert_true(changed);
    assert_int_equal(s.state, MQB_OTA_PENDING);
    struct mqb_boot_state good = s;
    assert_true(mqb_ota_mark_valid(&good));
    assert_false(mqb_ota_mark_valid(&good));
    assert_int_equal(mqb_ota_boot(&good, &changed), 1);
    assert_false(changed);
    // Not marked valid before the next reset: roll back to the previous slot.
    assert_int_equal(mqb_ota_boot(&s, &changed), 0);
    assert_true(changed);
    assert_int_equal(s.state, MQB_OTA_ABORTED);
    assert_int_equal(mqb_ota_boot(&s, &changed), 0);
    assert_false(changed);
}

// A new image may not overwrite the only known-good image: not while the running one is
// pending, and always once it is valid (or when a verified one waits for its boot).
static void test_ota_may_write(void **state) {
    (void)state;
    struct mqb_boot_state s = {.seq = 1, .slot = 0, .state = MQB_OTA_VALID, .prev = 0};
    assert_true(mqb_ota_may_write(&s, 0));
    mqb_ota_activate(&s, 1);
    assert_true(mqb_ota_may_write(&s, 0)); // NEW in slot 1, still running slot 0
    bool changed;
    assert_int_equal(mqb_ota_boot(&s, &changed), 1);
    assert_false(mqb_ota_may_write(&s, 1)); // PENDING: slot 0 is the rollback
    assert_true(mqb_ota_mark_valid(&s));
    assert_true(mqb_ota_may_write(&s, 1));
    struct mqb_boot_state aborted = {.seq = 3, .slot = 0, .state = MQB_OTA_ABORTED, .prev = 1};
    assert_true(mqb_ota_may_write(&aborted, 0)); // rolled back: slot 1 is free to rewrite
}

static void test_wdt_feeding_and_expiry(void **state) {
    (void)state;
    struct mqb_wdt w;
    mqb_wdt_init(&w, 1000, 3000, 0);
    assert_true(mqb_wdt_tick(&w, 0) & MQB_WDT_SEND_FEED);
    assert_false(mqb_wdt_tick(&w, 100) & MQB_WDT_SEND_FEED);
    assert_true(mqb_wdt_tick(&w, 250) & MQB_WDT_SEND_FEED); // every timeout/4
    assert_true(mqb_wdt_feed(&w, 260));
    assert_int_equal(mqb_wdt_tick(&w, 1200) & MQB_WDT_EXPIRED, 0);
    assert_true(mqb_wdt_tick(&w, 1261) & MQB_WDT_EXPIRED);
}

static void test_wdt_link_up_sends_a_feed_at_once(void **state) {
    (void)state;
    struct mqb_wdt w;
    mqb_wdt_init(&w, 300000, 10000, 0);
    assert_true(mqb_wdt_tick(&w, 0) & MQB_WDT_SEND_FEED); // sent while the link was down: lost
    mqb_wdt_link_up(&w);
    assert_true(mqb_wdt_tick(&w, 50) & MQB_WDT_SEND_FEED); // not 75 s later
    assert_int_equal(mqb_wdt_next_ms(&w, 50) <= 75000, 1);
    assert_true(mqb_wdt_feed(&w, 60));
    // The continuous-feeding run starts with that feed: allok 10 s after it.
    assert_int_equal(mqb_wdt_tick(&w, 10000) & MQB_WDT_ALLOK, 0);
    assert_true(mqb_wdt_tick(&w, 10060) & MQB_WDT_ALLOK);
}

static void test_wdt_allok_needs_continuous_feeding(void **state) {
    (void)state;
    struct mqb_wdt w;
    mqb_wdt_init(&w, 1000, 3000, 0);
    // One feed, then a gap longer than half the timeout: the run starts again.
    mqb_wdt_feed(&w, 100);
    mqb_wdt_feed(&w, 700);
    unsigned got = 0;
    for (uint64_t t = 900; t <= 3600; t += 300) {
        mqb_wdt_feed(&w, t);
        got |= mqb_wdt_tick(&w, t);
    }
    assert_int_equal(got & MQB_WDT_ALLOK, 0); // the run began at 700: 2900 ms so far
    mqb_wdt_feed(&w, 3800);
    assert_true(mqb_wdt_tick(&w, 3800) & MQB_WDT_ALLOK);
    assert_int_equal(mqb_wdt_tick(&w, 3900) & MQB_WDT_ALLOK, 0); // reported once
}

static void test_wdt_single_feed_is_not_enough(void **state) {
    (void)state;
    struct mqb_wdt w;
    mqb_wdt_init(&w, 10000, 3000, 0);
    mqb_wdt_feed(&w, 100);
    // No more feeds: after allok the last feed is too old for the run to count.
    assert_int_equal(mqb_wdt_tick(&w, 5200) & MQB_WDT_ALLOK, 0);
}

static void test_wdt_checks_gate_feeding(void **state) {
    (void)state;
    struct mqb_wdt w;
    mqb_wdt_init(&w, 1000, 3000, 0);
    assert_int_equal(mqb_wdt_require(&w, "app", 500, 0), MQB_OK);
    assert_true(mqb_wdt_feed(&w, 400));
    assert_false(mqb_wdt_feed(&w, 600)); // overdue: feeding refused
    assert_string_equal(mqb_wdt_overdue(&w, 600), "app");
    assert_int_equal(mqb_wdt_ok(&w, "app", 650), MQB_OK);
    assert_true(mqb_wdt_feed(&w, 700));
    assert_int_equal(mqb_wdt_ok(&w, "nope", 700), MQB_ERR_NOENT);
    assert_null(mqb_wdt_overdue(&w, 700));
    for (int i = 0; i < MQB_WDT_CHECKS - 1; i++) {
        char name[8] = {'c', (char)('0' + i), 0};
        assert_int_equal(mqb_wdt_require(&w, name, 500, 700), MQB_OK);
    }
    assert_int_equal(mqb_wdt_require(&w, "full", 500, 700), MQB_ERR_BUSY);
    assert_int_equal(mqb_wdt_require(&w, "app", 900, 700), MQB_OK); // re-register is fine
}

int run_boot_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safe_mode_rule),
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_otadata_roundtrip_and_damage),
        cmocka_unit_test(test_otadata_select),
        cmocka_unit_test(test_torn_write),
        cmocka_unit_test(test_ota_life_cycle),
        cmocka_unit_test(test_ota_may_write),
        cmocka_unit_test(test_wdt_feeding_and_expiry),
        cmocka_unit_test(test_wdt_link_up_sends_a_feed_at_once),
        cmocka_unit_test(test_wdt_allok_needs_continuous_feeding),
        cmocka_unit_test(test_wdt_single_feed_is_not_enough),
        cmocka_unit_test(test_wdt_checks_gate_feeding),
    };
    return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}
