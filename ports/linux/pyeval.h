// The evaluator: embedded CPython on a thread of its own, running one eval at a time in the
// board's __main__ globals, with output captured live into a bounded buffer that the event
// loop drains into reply messages, and events (log lines, reset requests, watchdog calls)
// that code on the board raises for the loop to act on.
#ifndef AGENT_PYEVAL_H
#define AGENT_PYEVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ask.h"
#include "mqb/config.h"

struct pyeval;

struct pyeval_config {
    const char *root;     // the board root (host path); becomes the working directory
    const char *rtc_path; // the file that emulates RTC memory
    const char *version;  // the agent's version
    int reset_cause;      // machine.reset_cause() of this boot
    bool safe_mode;       // booted in safe mode (run /safemode/main.py, not /main.py)
    int wake_fd;          // written (one byte) when output or an event is ready
    bool original;        // eval replies as the original mqrepl.py's (see _board.run)
    struct ask *ask;      // questions to the host (keyboard input, /remote), the agent's
};

// Output of the current eval, taken by the event loop. data and error are malloc'd and owned
// by the caller after pyeval_take.
struct pyeval_chunk {
    char id[MQB_ID_MAX + 1];
    uint8_t *data;
    size_t len;
    bool done;   // the eval finished and this is the rest of its output
    char *error; // when done: the traceback text, or NULL on success
    // When done: repr of the result (NULL for statements or None) and whether the source ran
    // as statements; for the plain JSON interface (repl/in).
    char *result;
    bool is_exec;
    bool json; // the job came from repl/in and wants one JSON reply
};

enum pyeval_event_kind {
    PYEVAL_LOG,         // text = "L message" (severity letter, space, message)
    PYEVAL_RESET,       // text = mode: "n", "f", "s", "h"; seconds 1 when asked by an eval
    PYEVAL_WDT_FEED,    // the loop-back feed arrived in the command path
    PYEVAL_WDT_REQUIRE, // text = check name, seconds = period
    PYEVAL_WDT_OK,      // text = check name
};

struct pyeval_event {
    enum pyeval_event_kind kind;
    char *text; // malloc'd, owned by the caller after pyeval_take_event
    double seconds;
    char job[MQB_ID_MAX + 1]; // PYEVAL_RESET asked by an eval: its id
};

// Starts the evaluator thread with Python initialized. Returns NULL on failure (with a
// message on stderr).
struct pyeval *pyeval_start(const struct pyeval_config *cfg);

// Queues an eval; takes ownership of src (malloc'd, len bytes, need not be NUL-terminated).
// json=true marks a repl/in job (its output is collected for one JSON reply). Returns false
// (src freed) when the queue is full: at most 64 jobs and 64 MB of queued source.
bool pyeval_submit(struct pyeval *pe, const char *id, char *src, size_t len, bool json);

// The watchdog's probe: answered with a PYEVAL_WDT_FEED event as soon as the interpreter
// shows that it runs (an idle interpreter takes the GIL; a busy one runs the signal handler
// that interrupts use). An interpreter stuck in C code never answers.
void pyeval_probe(struct pyeval *pe);

// Leases: an eval whose lease ends is interrupted (again every second while it runs on), or
// dropped if it is still queued. Renew sets the lease of eval id to end at `until` (ms,
// pyeval_now_ms); returns false when no such eval is queued or running.
bool pyeval_renew(struct pyeval *pe, const char *id, uint64_t until);
// Acts on one ended lease: returns 0 (none), 1 (the running eval was interrupted) or 2 (a
// queued eval was dropped), with its id.
int pyeval_expire(struct pyeval *pe, uint64_t now, char *id, size_t cap);
uint64_t pyeval_now_ms(void);

// What the evaluator is busy with: the running eval (id, start of its source, ms since it
// began) and how many wait. Returns false when it is idle.
struct pyeval_busy {
    char id[MQB_ID_MAX + 1];
    char what[64];
    uint64_t ms;
    unsigned queued;
};
bool pyeval_busy(struct pyeval *pe, struct pyeval_busy *b);

// Takes up to max bytes of the current eval's output, but only when at least min bytes are
// pending or the eval is done. Returns false when there was nothing to take.
bool pyeval_take(struct pyeval *pe, size_t max, size_t min, struct pyeval_chunk *out);

// True when the current eval has output to take, or has finished.
bool pyeval_has_output(struct pyeval *pe);

// Takes the next event raised by code on the board. Returns false when there is none.
bool pyeval_take_event(struct pyeval *pe, struct pyeval_event *out);

// Raises KeyboardInterrupt in the running eval (if id is NULL or names it), or removes the
// queued eval of id. The interrupt is tied to the eval: one that arrives after its eval ended
// never hits the next one.
enum pyeval_hit { PYEVAL_MISS, PYEVAL_HIT_RUNNING, PYEVAL_HIT_QUEUED };
enum pyeval_hit pyeval_interrupt(struct pyeval *pe, const char *id);

// True when an eval of this id is queued or running.
bool pyeval_known(struct pyeval *pe, const char *id);

// Number of evals queued or running.
unsigned pyeval_pending(struct pyeval *pe);

// Sets the watchdog's state that watchdog.status() returns (JSON text, copied).
void pyeval_set_wdt_status(struct pyeval *pe, const char *json);

// Runs the application (main.py, or /safemode/main.py in safe mode) on a Python thread of its
// own, in __main__'s globals, if the file exists. Call once, after start. The evaluator thread
// starts it, in turn with the evals, so that the caller never waits for the interpreter.
void pyeval_start_app(struct pyeval *pe);

#endif
