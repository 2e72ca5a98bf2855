// Boot decisions: the RTC-memory safe-mode rule and the A/B boot-state record. See
// include/mqb/boot.h.
#include "mqb/boot.h"

#include <string.h>

const uint8_t mqb_rtc_magic[MQB_RTC_MAGIC_LEN] = {0x0D, 0xF0, 0xEF, 0xBE};
const uint8_t mqb_rtc_cleared[MQB_RTC_MAGIC_LEN] = {0, 0, 0, 0};

#define OTADATA_MAGIC 0x4D514244u // "MQBD"

enum mqb_boot_mode mqb_boot_mode(const uint8_t *rtc, size_t len) {
    if (len == 0) {
        return MQB_BOOT_NORMAL; // power-on: nothing to distrust yet
    }
    if (len >= MQB_RTC_MAGIC_LEN && memcmp(rtc, mqb_rtc_magic, MQB_RTC_MAGIC_LEN) == 0) {
        return MQB_BOOT_NORMAL;
    }
    return MQB_BOOT_SAFE;
}

uint32_t mqb_crc32(const uint8_t *data, size_t len) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void mqb_otadata_encode(const struct mqb_boot_state *s, uint8_t out[MQB_OTADATA_LEN]) {
    put32(out, OTADATA_MAGIC);
    put32(out + 4, s->seq);
    out[8] = s->slot;
    out[9] = s->state;
    out[10] = s->prev;
    out[11] = 0;
    put32(out + 12, mqb_crc32(out, 12));
}

enum mqb_err mqb_otadata_decode(const uint8_t *in, size_t len, struct mqb_boot_state *out) {
    if (in == NULL || len < MQB_OTADATA_LEN || get32(in) != OTADATA_MAGIC ||
        get32(in + 12) != mqb_crc32(in, 12) || in[8] > 1 || in[9] > MQB_OTA_ABORTED || in[10] > 1) {
        return MQB_ERR_MALFORMED;
    }
    out->seq = get32(in + 4);
    out->slot = in[8];
    out->state = in[9];
    out->prev = in[10];
    return MQB_OK;
}

enum mqb_err mqb_otadata_select(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                                struct mqb_boot_state *out, int *newer) {
    struct mqb_boot_state sa, sb;
    bool va = mqb_otadata_decode(a, alen, &sa) == MQB_OK;
    bool vb = mqb_otadata_decode(b, blen, &sb) == MQB_OK;
    if (!va && !vb) {
        return MQB_ERR_NOENT;
    }
    // Sequence numbers are compared modulo 2^32, so wrapping is harmless.
    bool pick_a = va && (!vb || (int32_t)(sa.seq - sb.seq) > 0);
    *out = pick_a ? sa : sb;
    *newer = pick_a ? 0 : 1;
    return MQB_OK;
}

uint8_t mqb_ota_boot(struct mqb_boot_state *s, bool *changed) {
    *changed = false;
    if (s->state == MQB_OTA_NEW) {
        s->state = MQB_OTA_PENDING;
        *changed = true;
    } else if (s->state == MQB_OTA_PENDING) {
        // The new image had its one boot and never proved itself: roll back.
        uint8_t bad = s->slot;
        s->slot = s->prev;
        s->prev = bad;
        s->state = MQB_OTA_ABORTED;
        *changed = true;
    }
    if (*changed) {
        s->seq++;
    }
    return s->slot;
}

void mqb_ota_activate(struct mqb_boot_state *s, uint8_t slot) {
    s->prev = s->slot;
    s->slot = slot;
    s->state = MQB_OTA_NEW;
    s->seq++;
}

bool mqb_ota_mark_valid(struct mqb_boot_state *s) {
    if (s->state != MQB_OTA_PENDING) {
        return false;
    }
    s->state = MQB_OTA_VALID;
    s->seq++;
    return true;
}

bool mqb_ota_may_write(const struct mqb_boot_state *s, uint8_t running) {
    return !(s->slot == running && s->state == MQB_OTA_PENDING);
}
