// Questions of the board's Python to its host (see ask.h): a one-slot mailbox between the
// asking thread and the event loop, and the mount's owner and lease.
#define _GNU_SOURCE
#include "ask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqb/wire.h"

void ask_init(struct ask *k) {
    memset(k, 0, sizeof(*k));
    pthread_mutex_init(&k->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->cond, &ca);
    pthread_condattr_destroy(&ca);
}

// The payload: header 0xFFFF, then the question's JSON object with "n" put first, then the
// rest of req (a newline and data).
static uint8_t *build(unsigned n, const uint8_t *req, size_t len, size_t *out_len) {
    char head[32];
    int h = snprintf(head, sizeof(head), "{\"n\":%u%s", n, len > 2 && req[1] != '}' ? "," : "");
    uint8_t *p = malloc(MQB_HDR_LEN + (size_t)h + len);
    mqb_hdr_encode(p, MQB_SEQ_MASK, true);
    memcpy(p + MQB_HDR_LEN, head, (size_t)h);
    memcpy(p + MQB_HDR_LEN + h, req + 1, len - 1);
    *out_len = MQB_HDR_LEN + (size_t)h + len - 1;
    return p;
}

bool ask_post(struct ask *k, const char *to, const uint8_t *req, size_t len, size_t ans_max) {
    if (len < 2 || req[0] != '{' || len > ASK_MAX || to[0] == '\0') {
        return false;
    }
    pthread_mutex_lock(&k->mu);
    bool ok = !k->busy;
    if (ok) {
        k->busy = k->posted = true;
        k->answered = false;
        k->n++;
        snprintf(k->to, sizeof(k->to), "%s", to);
        k->req = build(k->n, req, len, &k->req_len);
        k->ans_max = ans_max < ASK_MAX ? ans_max : ASK_MAX;
    }
    pthread_mutex_unlock(&k->mu);
    return ok;
}

bool ask_wait(struct ask *k, int ms, uint8_t **ans, size_t *len) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&k->mu);
    while (!k->answered && pthread_cond_timedwait(&k->cond, &k->mu, &until) == 0) {
    }
    bool got = k->answered;
    if (got) {
        *ans = k->ans;
        *len = k->ans_len;
        k->ans = NULL;
    }
    pthread_mutex_unlock(&k->mu);
    return got;
}

void ask_end(struct ask *k) {
    pthread_mutex_lock(&k->mu);
    k->busy = k->posted = k->answered = false;
    free(k->req);
    free(k->ans);
    k->req = k->ans = NULL;
    pthread_mutex_unlock(&k->mu);
}

bool ask_take(struct ask *k, char to[MQB_ID_MAX + 1], uint8_t **payload, size_t *len) {
    pthread_mutex_lock(&k->mu);
    bool took = k->posted;
    if (took) {
        k->posted = false;
        memcpy(to, k->to, sizeof(k->to));
        *payload = k->req;
        *len = k->req_len;
        k->req = NULL;
    }
    pthread_mutex_unlock(&k->mu);
    return took;
}

bool ask_answer(struct ask *k, const char *to, unsigned long n, const uint8_t *data, size_t len) {
    pthread_mutex_lock(&k->mu);
    bool take = k->busy && !k->posted && !k->answered && n == k->n && strcmp(to, k->to) == 0;
    if (take) {
        k->ans_len = len < k->ans_max ? len : k->ans_max; // never more than was asked for
        k->ans = malloc(k->ans_len + 1);
        if (k->ans_len > 0) {
            memcpy(k->ans, data, k->ans_len);
        }
        k->answered = true;
        pthread_cond_broadcast(&k->cond);
    }
    pthread_mutex_unlock(&k->mu);
    return take;
}

void ask_mount(struct ask *k, const char *id, bool rw, uint64_t end) {
    pthread_mutex_lock(&k->mu);
    snprintf(k->mount_id, sizeof(k->mount_id), "%s", id);
    k->mount_rw = rw;
    k->mount_end = end;
    pthread_mutex_unlock(&k->mu);
}

bool ask_mount_renew(struct ask *k, const char *id, uint64_t end) {
    pthread_mutex_lock(&k->mu);
    bool mine = k->mount_id[0] != '\0' && strcmp(k->mount_id, id) == 0;
    if (mine) {
        k->mount_end = end;
    }
    pthread_mutex_unlock(&k->mu);
    return mine;
}

bool ask_mount_expire(struct ask *k, uint64_t now, char *id, size_t cap) {
    pthread_mutex_lock(&k->mu);
    bool ended = k->mount_id[0] != '\0' && now >= k->mount_end;
    if (ended) {
        snprintf(id, cap, "%s", k->mount_id);
        k->mount_id[0] = '\0';
    }
    pthread_mutex_unlock(&k->mu);
    return ended;
}

int ask_mounted(struct ask *k, char *id, size_t cap) {
    pthread_mutex_lock(&k->mu);
    int m = k->mount_id[0] == '\0' ? -1 : k->mount_rw;
    if (id != NULL) {
        snprintf(id, cap, "%s", k->mount_id);
    }
    pthread_mutex_unlock(&k->mu);
    return m;
}
