// Boot decisions: the safe-mode rule over RTC memory, and the A/B boot-state record (two
// copies with a sequence number and a CRC, as ESP-IDF's otadata) with its
// new -> pending-verify -> valid / aborted -> rollback life cycle.
#ifndef MQB_BOOT_H
#define MQB_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/err.h"

// RTC memory magic that means "boot normally": 0xBEEFF00D, little-endian, as the original
// board writes it with struct.pack_into("HH", mem, 0, 0xF00D, 0xBEEF).
#define MQB_RTC_MAGIC_LEN 4
extern const uint8_t mqb_rtc_magic[MQB_RTC_MAGIC_LEN];

enum mqb_boot_mode { MQB_BOOT_NORMAL, MQB_BOOT_SAFE };

// The safe-mode rule: empty RTC memory (power-on) or the magic -> normal; anything else ->
// safe. Either way the caller then writes 4 bytes that are not the magic (see
// mqb_rtc_cleared), so that the next boot is normal only if this one earns it.
enum mqb_boot_mode mqb_boot_mode(const uint8_t *rtc, size_t len);

// The 4 bytes written at boot ("not the magic").
extern const uint8_t mqb_rtc_cleared[MQB_RTC_MAGIC_LEN];

enum mqb_ota_state {
    MQB_OTA_VALID = 0,   // the slot has proven itself (or is the factory image)
    MQB_OTA_NEW = 1,     // written and verified, not yet booted
    MQB_OTA_PENDING = 2, // booted once, waiting to be marked valid
    MQB_OTA_ABORTED = 3, // never proved itself: rolled back
};

struct mqb_boot_state {
    uint32_t seq;  // higher wins
    uint8_t slot;  // the slot to boot (0 or 1)
    uint8_t state; // enum mqb_ota_state of that slot
    uint8_t prev;  // the slot to roll back to
};

#define MQB_OTADATA_LEN 16

// Serializes one copy of the record (magic, seq, slot, state, prev, CRC-32).
void mqb_otadata_encode(const struct mqb_boot_state *s, uint8_t out[MQB_OTADATA_LEN]);

// Parses one copy. MQB_ERR_MALFORMED when it is short, has a bad magic or CRC, or bad fields.
enum mqb_err mqb_otadata_decode(const uint8_t *in, size_t len, struct mqb_boot_state *out);

// Chooses the record from two copies (either may be damaged: pass what was read). Returns
// MQB_ERR_NOENT when neither is valid. *newer is the copy index that holds it; the next
// write goes to the other copy (1 - *newer).
enum mqb_err mqb_otadata_select(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                                struct mqb_boot_state *out, int *newer);

// The boot decision over the record: which slot boots now, and the record to write back
// first (*changed). NEW -> boot it, becomes PENDING; PENDING at boot -> it never proved
// itself: ABORTED, boot prev; VALID/ABORTED -> boot what the record says.
uint8_t mqb_ota_boot(struct mqb_boot_state *s, bool *changed);

// A new image was written to slot and verified: boot it next (state NEW, prev = current).
void mqb_ota_activate(struct mqb_boot_state *s, uint8_t slot);

// The running image proved itself (allok): PENDING -> VALID. Returns true when it changed.
bool mqb_ota_mark_valid(struct mqb_boot_state *s);

// May a new image be written into the slot that is not `running`? Not while the running
// image is still PENDING: the other slot then holds the only known-good image, which the
// rollback needs (ESP-IDF refuses the same way).
bool mqb_ota_may_write(const struct mqb_boot_state *s, uint8_t running);

// CRC-32 (IEEE 802.3), as used by the record.
uint32_t mqb_crc32(const uint8_t *data, size_t len);

#endif
