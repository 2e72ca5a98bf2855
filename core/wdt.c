// The watchdog state machine: feed scheduling, expiry, continuous-feeding ("allok") and the
// application checks that gate feeding. See include/mqb/wdt.h.
#include "mqb/wdt.h"

#include <string.h>

void mqb_wdt_init(struct mqb_wdt *w, uint32_t timeout_ms, uint32_t allok_ms, uint64_t now_ms) {
    memset(w, 0, sizeof(*w));
    w->timeout_ms = timeout_ms;
    w->allok_ms = allok_ms;
    w->last_feed_ms = now_ms;
}

const char *mqb_wdt_overdue(const struct mqb_wdt *w, uint64_t now_ms) {
    for (unsigned i = 0; i < MQB_WDT_CHECKS; i++) {
        const struct mqb_wdt_check *c = &w->checks[i];
        if (c->period_ms != 0 && now_ms - c->last_ok_ms > c->period_ms) {
            return c->name;
        }
    }
    return NULL;
}

bool mqb_wdt_feed(struct mqb_wdt *w, uint64_t now_ms) {
    if (mqb_wdt_overdue(w, now_ms) != NULL) {
        return false;
    }
    // A gap longer than half the timeout breaks the run: the board was not reliably
    // controllable during it.
    if (!w->fed_once || now_ms - w->last_feed_ms > w->timeout_ms / 2) {
        w->streak_ms = now_ms;
    }
    w->fed_once = true;
    w->last_feed_ms = now_ms;
    return true;
}

static struct mqb_wdt_check *find_check(struct mqb_wdt *w, const char *name) {
    for (unsigned i = 0; i < MQB_WDT_CHECKS; i++) {
        if (w->checks[i].period_ms != 0 && strcmp(w->checks[i].name, name) == 0) {
            return &w->checks[i];
        }
    }
    return NULL;
}

enum mqb_err mqb_wdt_require(struct mqb_wdt *w, const char *name, uint32_t period_ms,
                             uint64_t now_ms) {
    if (strlen(name) > MQB_WDT_NAME_MAX || period_ms == 0) {
        return MQB_ERR_TOOBIG;
    }
    struct mqb_wdt_check *c = find_check(w, name);
    for (unsigned i = 0; c == NULL && i < MQB_WDT_CHECKS; i++) {
        if (w->checks[i].period_ms == 0) {
            c = &w->checks[i];
        }
    }
    if (c == NULL) {
        return MQB_ERR_BUSY;
    }
    strcpy(c->name, name);
    c->period_ms = period_ms;
    c->last_ok_ms = now_ms;
    return MQB_OK;
}

enum mqb_err mqb_wdt_ok(struct mqb_wdt *w, const char *name, uint64_t now_ms) {
    struct mqb_wdt_check *c = find_check(w, name);
    if (c == NULL) {
        return MQB_ERR_NOENT;
    }
    c->last_ok_ms = now_ms;
    return MQB_OK;
}

unsigned mqb_wdt_tick(struct mqb_wdt *w, uint64_t now_ms) {
    unsigned actions = 0;
    if (now_ms - w->last_feed_ms > w->timeout_ms) {
        return MQB_WDT_EXPIRED;
    }
    if (!w->sent_once || now_ms - w->last_send_ms >= w->timeout_ms / 4) {
        w->sent_once = true;
        w->last_send_ms = now_ms;
        actions |= MQB_WDT_SEND_FEED;
    }
    if (!w->allok_done && w->fed_once && w->streak_ms != 0 &&
        now_ms - w->last_feed_ms <= w->timeout_ms / 2 && now_ms - w->streak_ms >= w->allok_ms) {
        w->allok_done = true;
        actions |= MQB_WDT_ALLOK;
    }
    return actions;
}

void mqb_wdt_link_up(struct mqb_wdt *w) {
    w->sent_once = false;
}

uint32_t mqb_wdt_next_ms(const struct mqb_wdt *w, uint64_t now_ms) {
    uint64_t next = w->sent_once ? w->last_send_ms + w->timeout_ms / 4 : now_ms;
    uint64_t expiry = w->last_feed_ms + w->timeout_ms + 1;
    if (expiry < next) {
        next = expiry;
    }
    if (!w->allok_done && w->fed_once && w->streak_ms + w->allok_ms < next) {
        next = w->streak_ms + w->allok_ms;
    }
    return next <= now_ms ? 0 : (uint32_t)(next - now_ms);
}
