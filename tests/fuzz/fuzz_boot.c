// libFuzzer target: the boot-state record, the safe-mode rule and the watchdog. Input: two
// record copies (first byte: the length of the first), then watchdog operations.
#include <stdint.h>
#include <string.h>

#include "mqb/boot.h"
#include "mqb/wdt.h"

static void fuzz_wdt(const uint8_t *data, size_t size) {
    struct mqb_wdt w;
    uint64_t now = 1000;
    mqb_wdt_init(&w, 2000, 5000, now);
    for (size_t i = 0; i + 1 < size; i += 2) {
        now += (uint64_t)data[i + 1] * 37;
        switch (data[i] % 5) {
        case 0: (void)mqb_wdt_feed(&w, now); break;
        case 1: (void)mqb_wdt_require(&w, data[i] & 8 ? "a" : "b", data[i + 1] * 100u, now); break;
        case 2: mqb_wdt_ok(&w, data[i] & 8 ? "a" : "b", now); break;
        case 3: (void)mqb_wdt_tick(&w, now); break;
        default: (void)mqb_wdt_next_ms(&w, now); break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) {
        return 0;
    }
    size_t n0 = data[0] < size - 1 ? data[0] : size - 1;
    const uint8_t *c0 = data + 1, *c1 = c0 + n0;
    size_t n1 = size - 1 - n0;
    (void)mqb_boot_mode(c0, n0);
    struct mqb_boot_state st;
    int newer;
    if (mqb_otadata_select(c0, n0, c1, n1, &st, &newer) == MQB_OK) {
        uint8_t buf[MQB_OTADATA_LEN];
        bool changed;
        mqb_otadata_encode(&st, buf);
        (void)mqb_ota_boot(&st, &changed);
        (void)mqb_ota_may_write(&st, st.slot);
        (void)mqb_ota_mark_valid(&st);
    }
    fuzz_wdt(data, size);
    return 0;
}
