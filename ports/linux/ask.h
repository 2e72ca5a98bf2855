// Questions of the board's Python to its host, over MQTT: keyboard input for a running eval
// (sys.stdin, input()) and the files of a directory the host mounted (/remote). One question
// is out at a time: the asking thread posts it and waits; the event loop publishes it on
// reply/ask/<id> and hands back the answer that arrives on cmd/ans/<id>/<n>. The mount's
// owner (the host that serves it) and its lease live here too. Thread-safe.
#ifndef AGENT_ASK_H
#define AGENT_ASK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/config.h"

// A question's text (JSON, plus data for a write) and an answer are at most this long.
#define ASK_MAX (MQB_CHUNK_MAX - 64)

struct ask {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool busy;     // a question is out
    bool posted;   // ... and the loop has not published it yet
    bool answered; // ... and its answer is in ans
    unsigned n;    // its number: the answer's topic names it
    char to[MQB_ID_MAX + 1];
    uint8_t *req; // the payload to publish (header, JSON with "n", data), malloc'd
    size_t req_len;
    uint8_t *ans; // malloc'd
    size_t ans_len, ans_max;
    // The mounted directory: its owner's id ("" when nothing is mounted), writable, and when
    // its lease ends (the owner renews it with `running`; ms on the loop's clock).
    char mount_id[MQB_ID_MAX + 1];
    bool mount_rw;
    uint64_t mount_end;
};

void ask_init(struct ask *k);

// The asker: posts a question for the host that listens on `to` (req is a JSON object text
// followed, after a newline, by data; copied). Returns false when another question is out
// or req is too long.
bool ask_post(struct ask *k, const char *to, const uint8_t *req, size_t len, size_t ans_max);
// The asker: waits up to ms for the answer. Returns true with *ans (malloc'd, the caller's)
// once it is in; false while it is not.
bool ask_wait(struct ask *k, int ms, uint8_t **ans, size_t *len);
// The asker: ends its question, answered or not.
void ask_end(struct ask *k);

// The loop: takes the posted question: the id to publish it under and its payload
// (malloc'd, the caller's). Returns false when none is posted.
bool ask_take(struct ask *k, char to[MQB_ID_MAX + 1], uint8_t **payload, size_t *len);
// The loop: an answer for question n of `to`; taken only when it is the one awaited.
bool ask_answer(struct ask *k, const char *to, unsigned long n, const uint8_t *data, size_t len);

// The mount: set (id not empty) or removed (id ""), renewed by its owner, expired.
void ask_mount(struct ask *k, const char *id, bool rw, uint64_t end);
bool ask_mount_renew(struct ask *k, const char *id, uint64_t end);
// Removes a mount whose lease ended; true (with its owner's id) when it did.
bool ask_mount_expire(struct ask *k, uint64_t now, char *id, size_t cap);
// -1: nothing mounted; 0 read-only; 1 writable. id (may be NULL) gets the owner.
int ask_mounted(struct ask *k, char *id, size_t cap);

#endif
