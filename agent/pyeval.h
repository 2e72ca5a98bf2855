// The evaluator: embedded CPython on a thread of its own, running one eval at a time in the
// board's __main__ globals, with output captured live into a bounded buffer that the event
// loop drains into reply messages.
#ifndef AGENT_PYEVAL_H
#define AGENT_PYEVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/config.h"

struct pyeval;

// Output of the current eval, taken by the event loop. data and error are malloc'd and owned
// by the caller after pyeval_take.
struct pyeval_chunk {
    char id[MQB_ID_MAX + 1];
    uint8_t *data;
    size_t len;
    bool done;   // the eval finished and this is the rest of its output
    char *error; // when done: the traceback text, or NULL on success
};

// Starts the evaluator thread with Python initialized and the board root as its working
// directory. wake_fd is written (one byte) whenever output becomes available.
// Returns NULL on failure (with a message on stderr).
struct pyeval *pyeval_start(const char *root, int wake_fd);

// Queues an eval; takes ownership of src (malloc'd, len bytes, need not be NUL-terminated).
void pyeval_submit(struct pyeval *pe, const char *id, char *src, size_t len);

// Takes up to max bytes of the current eval's output, but only when at least min bytes are
// pending or the eval is done. Returns false when there was nothing to take.
bool pyeval_take(struct pyeval *pe, size_t max, size_t min, struct pyeval_chunk *out);

// True when the current eval has output to take, or has finished.
bool pyeval_has_output(struct pyeval *pe);

// Raises KeyboardInterrupt in the running eval (if id is NULL or names it). Returns false
// when no eval (of that id) is running.
bool pyeval_interrupt(struct pyeval *pe, const char *id);

#endif
