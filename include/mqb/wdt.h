// The watchdog and the safe-mode switch as a state machine over time: when to send the
// loop-back feed, when the watchdog expires, and when feeding has been continuous for long
// enough ("allok") to trust this boot. Application checks (require/ok) gate the feeding.
#ifndef MQB_WDT_H
#define MQB_WDT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/err.h"

#ifndef MQB_WDT_CHECKS
#define MQB_WDT_CHECKS 8
#endif
#define MQB_WDT_NAME_MAX 31

// Actions mqb_wdt_tick asks for (a bit set).
enum {
    MQB_WDT_SEND_FEED = 1, // publish the loop-back feed now
    MQB_WDT_EXPIRED = 2,   // not fed for the timeout: reset the board
    MQB_WDT_ALLOK = 4,     // fed continuously for allok: write the magic, mark OTA valid,
                           // and (in safe mode) reset into normal mode. Reported once.
};

struct mqb_wdt_check {
    char name[MQB_WDT_NAME_MAX + 1];
    uint32_t period_ms; // 0: slot unused
    uint64_t last_ok_ms;
};

struct mqb_wdt {
    uint32_t timeout_ms;
    uint32_t allok_ms;
    uint64_t last_feed_ms; // last accepted feed (or arming)
    uint64_t last_send_ms; // last loop-back feed sent
    uint64_t streak_ms;    // start of the current run of continuous feeding; 0: none
    bool fed_once;
    bool sent_once;
    bool allok_done;
    struct mqb_wdt_check checks[MQB_WDT_CHECKS];
};

// Arms the watchdog at now_ms. timeout_ms > 0; allok_ms is the continuous feeding that
// earns trust.
void mqb_wdt_init(struct mqb_wdt *w, uint32_t timeout_ms, uint32_t allok_ms, uint64_t now_ms);

// The loop-back feed arrived through the command path. It is refused (returns false) while
// an application check is overdue. Feeding is continuous while no gap between feeds exceeds
// half the timeout.
bool mqb_wdt_feed(struct mqb_wdt *w, uint64_t now_ms);

// Registers (or re-registers) an application check that must be ok'd every period_ms.
// MQB_ERR_BUSY when all MQB_WDT_CHECKS slots are taken; MQB_ERR_TOOBIG for a long name.
enum mqb_err mqb_wdt_require(struct mqb_wdt *w, const char *name, uint32_t period_ms,
                             uint64_t now_ms);

// Marks a check healthy. MQB_ERR_NOENT when no check has that name.
enum mqb_err mqb_wdt_ok(struct mqb_wdt *w, const char *name, uint64_t now_ms);

// Name of the first overdue check, or NULL.
const char *mqb_wdt_overdue(const struct mqb_wdt *w, uint64_t now_ms);

// What to do now (MQB_WDT_* bits). Sends are due every timeout/4.
unsigned mqb_wdt_tick(struct mqb_wdt *w, uint64_t now_ms);

// The broker link is (re)established: the next tick sends a feed at once (one sent while the
// link was down was lost, and the continuous-feeding run only starts with a feed that came
// back: waiting timeout/4 for the next one would delay confirming a new image by as much).
void mqb_wdt_link_up(struct mqb_wdt *w);

// Milliseconds until the next tick has something to do (for the loop's poll timeout).
uint32_t mqb_wdt_next_ms(const struct mqb_wdt *w, uint64_t now_ms);

#endif
