// What the evaluator (pyeval.c) and the _mqb module (pymodule.c) share: the evaluator's state
// and its bounds, and the helpers through which the module reaches it. Private to the two.
#ifndef MQB_LINUX_PYEVAL_STATE_H
#define MQB_LINUX_PYEVAL_STATE_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyeval.h"

// Output a running eval may buffer before its writes block (back-pressure from the host).
#define OUT_MAX (1024 * 1024)
// Events (log lines) queued beyond this are dropped; the loop rate-limits what it sends.
#define EVENTS_MAX 1000
// Evals queued (or running) at most; beyond that a new one is refused (a flood of evals
// cannot grow the agent's memory).
#define JOBS_MAX 64
// Queued eval source, over all queued jobs, at most (bytes).
#define QUEUED_SRC_MAX (64u * 1024 * 1024)
// The signal that wakes the evaluator thread: a Python-level handler (_board._on_signal)
// answers the watchdog's probe and raises KeyboardInterrupt only when an interrupt names the
// eval that runs.
#define INTERRUPT_SIGNAL SIGUSR2

extern const struct {
    const char *name;
    const char *src;
} mpcompat_modules[];

struct job {
    char id[MQB_ID_MAX + 1];
    char *src;
    size_t len;
    bool json;
    char *app;          // not an eval: start the application in this file
    bool probe;         // not an eval: the watchdog's probe of an idle interpreter
    uint64_t lease_end; // interrupt (or drop) when this time passes (0: no lease)
    uint64_t started;   // when it began to run (ms, the loop's clock)
    struct job *next;
};

struct event_node {
    struct pyeval_event ev;
    struct event_node *next;
};

struct pyeval {
    struct pyeval_config cfg;
    char root[4096];
    char rtc_path[4096];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; // jobs queued, output drained, start-up done
    struct job *head, *tail;
    unsigned queued;              // jobs queued or running
    size_t queued_bytes;          // their source bytes
    bool probe_pending;           // the watchdog asked whether the interpreter still responds
    char intr_id[MQB_ID_MAX + 1]; // the eval an interrupt was sent to ("" none)
    char *wdt_status;             // JSON snapshot for watchdog.status(), under mu
    struct event_node *ev_head, *ev_tail;
    unsigned ev_count;
    // The running (or finished, not yet drained) eval, under mu.
    bool running;
    struct job *cur;
    uint8_t *out;
    size_t out_len, out_cap;
    bool done;
    char *error, *result;
    bool is_exec;
    int started;       // 1 ok, -1 failed
    PyObject *board;   // the _board module
    PyObject *globals; // __main__'s dict (borrowed)
};

// Wakes the agent's loop (its pipe).
void pyeval_wake(struct pyeval *pe);
// Appends to the running eval's output, waiting (GIL released) while the buffer is full.
void pyeval_out_append(struct pyeval *pe, const char *s, size_t n);
// Queues an event for the loop (log lines beyond EVENTS_MAX are dropped).
void pyeval_post_event(struct pyeval *pe, enum pyeval_event_kind kind, const char *text,
                       double seconds);
// The _mqb module (pymodule.c): its init function for PyImport_AppendInittab, and the
// evaluator it serves.
PyObject *pymodule_init(void);
void pymodule_attach(struct pyeval *pe);

#endif
