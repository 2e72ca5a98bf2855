// Embedded CPython for eval: the evaluator thread, live output capture with back-pressure,
// events for the loop, and interrupts via a real signal. The _mqb module through which the
// Python side talks to C is pymodule.c.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pyeval.h"
#include "pyeval_state.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t pyeval_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void pyeval_wake(struct pyeval *pe) {
    char b = 1;
    ssize_t r = write(pe->cfg.wake_fd, &b, 1);
    (void)r; // a full pipe already means "wake up"
}

// Appends to the current output, waiting (with the GIL released) while the buffer is full.
void pyeval_out_append(struct pyeval *pe, const char *s, size_t n) {
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&pe->mu);
    // A JSON job (repl/in) is answered in one message: what does not fit is dropped.
    if (pe->cur->json && pe->out_len + n > OUT_MAX) {
        n = OUT_MAX - pe->out_len;
    }
    while (n > 0) {
        while (pe->out_len >= OUT_MAX) {
            pthread_cond_wait(&pe->cond, &pe->mu);
        }
        size_t take = n < OUT_MAX - pe->out_len ? n : OUT_MAX - pe->out_len;
        if (pe->out_len + take > pe->out_cap) {
            size_t cap = pe->out_cap ? pe->out_cap : 4096;
            while (cap < pe->out_len + take) {
                cap *= 2;
            }
            pe->out = realloc(pe->out, cap);
            pe->out_cap = cap;
        }
        memcpy(pe->out + pe->out_len, s, take);
        pe->out_len += take;
        s += take;
        n -= take;
        pyeval_wake(pe);
    }
    pthread_mutex_unlock(&pe->mu);
    Py_END_ALLOW_THREADS
}

void pyeval_post_event(struct pyeval *pe, enum pyeval_event_kind kind, const char *text,
                       double seconds) {
    pthread_mutex_lock(&pe->mu);
    if (kind != PYEVAL_LOG || pe->ev_count < EVENTS_MAX) {
        struct event_node *n = calloc(1, sizeof(*n));
        n->ev.kind = kind;
        n->ev.text = text != NULL ? strdup(text) : NULL;
        n->ev.seconds = seconds;
        if (kind == PYEVAL_RESET && seconds > 0 && pe->cur != NULL) {
            snprintf(n->ev.job, sizeof(n->ev.job), "%s", pe->cur->id);
        }
        if (pe->ev_tail != NULL) {
            pe->ev_tail->next = n;
        } else {
            pe->ev_head = n;
        }
        pe->ev_tail = n;
        pe->ev_count++;
        pyeval_wake(pe);
    }
    pthread_mutex_unlock(&pe->mu);
}

// ---- the evaluator thread ----

static struct job *next_job(struct pyeval *pe) {
    pthread_mutex_lock(&pe->mu);
    // The previous eval's output must be drained before the next one starts writing.
    while (pe->head == NULL || pe->running) {
        pthread_cond_wait(&pe->cond, &pe->mu);
    }
    struct job *j = pe->head;
    pe->head = j->next;
    if (pe->head == NULL) {
        pe->tail = NULL;
    }
    pe->running = true;
    pe->done = false;
    pe->error = pe->result = NULL;
    pe->out_len = 0;
    pe->cur = j;
    j->started = pyeval_now_ms();
    pe->queued_bytes -= j->len;
    pthread_mutex_unlock(&pe->mu);
    return j;
}

static char *dup_str(PyObject *o) {
    const char *s = o != NULL && o != Py_None ? PyUnicode_AsUTF8(o) : NULL;
    return s != NULL ? strdup(s) : NULL;
}

// Runs one job with the GIL held, through _board.run.
static void run_job(struct pyeval *pe, struct job *j) {
    PyObject *src = PyUnicode_DecodeUTF8(j->src, (Py_ssize_t)j->len, "replace");
    PyObject *res =
        src ? PyObject_CallMethod(pe->board, "run", "OOi", src, pe->globals, (int)pe->cfg.original)
            : NULL;
    Py_XDECREF(src);
    char *result = NULL, *error = NULL;
    bool is_exec = false;
    if (res != NULL && PyTuple_Check(res) && PyTuple_Size(res) == 3) {
        result = dup_str(PyTuple_GetItem(res, 0));
        error = dup_str(PyTuple_GetItem(res, 1));
        is_exec = PyObject_IsTrue(PyTuple_GetItem(res, 2)) == 1;
    } else if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        // The interrupt landed in the runner itself, before its try began (or after it
        // ended): the eval was interrupted, as the user asked.
        PyErr_Clear();
        error = strdup("KeyboardInterrupt\n");
    } else {
        PyErr_Clear();
        error = strdup("internal error: the eval runner failed\n");
    }
    Py_XDECREF(res);
    // A normal eval's reply is the output followed by the result, as the console shows it.
    if (result != NULL && !j->json) {
        pyeval_out_append(pe, result, strlen(result));
    }
    pthread_mutex_lock(&pe->mu);
    pe->error = error;
    pe->result = result;
    pe->is_exec = is_exec;
    pe->done = true;
    pe->intr_id[0] = '\0';
    bool probed = pe->probe_pending;
    pe->probe_pending = false;
    pyeval_wake(pe);
    pthread_mutex_unlock(&pe->mu);
    if (probed) {
        pyeval_post_event(pe, PYEVAL_WDT_FEED, NULL, 0);
    }
}

// Starts the application thread (with the GIL held, on the evaluator thread: should the
// application hold the interpreter at once, only this thread waits, never the event loop).
static void start_app(struct pyeval *pe, struct job *j) {
    if (j->probe) {
        // The interpreter was idle and this thread holds the GIL: it responds.
        pyeval_post_event(pe, PYEVAL_WDT_FEED, NULL, 0);
    } else {
        PyObject *r = PyObject_CallMethod(pe->board, "start_app", "sO", j->app, pe->globals);
        if (r == NULL) {
            PyErr_Print();
        }
        Py_XDECREF(r);
    }
    pthread_mutex_lock(&pe->mu);
    pe->running = false;
    pe->cur = NULL;
    pe->queued--;
    free(j->app);
    free(j);
    pthread_cond_broadcast(&pe->cond);
    pthread_mutex_unlock(&pe->mu);
}

// Loads the embedded _board module and lets it set up the interpreter.
static int load_board(struct pyeval *pe) {
    const char *src = NULL;
    for (int i = 0; mpcompat_modules[i].name != NULL; i++) {
        if (strcmp(mpcompat_modules[i].name, "_board") == 0) {
            src = mpcompat_modules[i].src;
        }
    }
    PyObject *code = src ? Py_CompileString(src, "<mqrepld>/_board.py", Py_file_input) : NULL;
    PyObject *mod = code ? PyImport_ExecCodeModule("_board", code) : NULL;
    Py_XDECREF(code);
    if (mod == NULL) {
        PyErr_Print();
        return -1;
    }
    pe->board = mod;
    PyObject *main = PyImport_AddModule("__main__"); // borrowed
    pe->globals = PyModule_GetDict(main);            // borrowed
    PyObject *r = PyObject_CallMethod(mod, "install", "O", pe->globals);
    // Interrupts arrive as a real signal so that blocking calls (time.sleep) wake up too.
    PyObject *r2 = r ? PyObject_CallMethod(mod, "bind_signal", "i", INTERRUPT_SIGNAL) : NULL;
    if (r == NULL || r2 == NULL) {
        PyErr_Print();
        return -1;
    }
    Py_DECREF(r);
    Py_DECREF(r2);
    return 0;
}

static void *eval_thread(void *arg) {
    struct pyeval *pe = arg;
    PyImport_AppendInittab("_mqb", pymodule_init);
    Py_InitializeEx(0);
    int rc = chdir(pe->root) == 0 ? load_board(pe) : -1;
    pthread_mutex_lock(&pe->mu);
    pe->started = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&pe->cond);
    pthread_mutex_unlock(&pe->mu);
    if (rc != 0) {
        return NULL;
    }
    PyThreadState *ts = PyEval_SaveThread();
    for (;;) {
        struct job *j = next_job(pe);
        PyEval_RestoreThread(ts);
        if (j->src == NULL) {
            start_app(pe, j);
        } else {
            run_job(pe, j);
        }
        ts = PyEval_SaveThread();
    }
    return NULL;
}

struct pyeval *pyeval_start(const struct pyeval_config *cfg) {
    struct pyeval *pe = calloc(1, sizeof(*pe));
    pe->cfg = *cfg;
    snprintf(pe->root, sizeof(pe->root), "%s", cfg->root);
    snprintf(pe->rtc_path, sizeof(pe->rtc_path), "%s", cfg->rtc_path);
    pe->cfg.root = pe->root;
    pe->cfg.rtc_path = pe->rtc_path;
    pthread_mutex_init(&pe->mu, NULL);
    pthread_cond_init(&pe->cond, NULL);
    pymodule_attach(pe);
    // Only the evaluator thread takes the interrupt signal.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, INTERRUPT_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    int rc = pthread_create(&pe->thread, NULL, eval_thread, pe);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) {
        fprintf(stderr, "mqrepld: cannot start the evaluator thread\n");
        return NULL;
    }
    pthread_mutex_lock(&pe->mu);
    while (pe->started == 0) {
        pthread_cond_wait(&pe->cond, &pe->mu);
    }
    pthread_mutex_unlock(&pe->mu);
    if (pe->started < 0) {
        fprintf(stderr, "mqrepld: cannot start the Python evaluator\n");
        return NULL;
    }
    return pe;
}

// Queues a job (at the head when first); the caller holds mu.
static void enqueue_locked(struct pyeval *pe, struct job *j, bool first) {
    if (first) {
        j->next = pe->head;
        pe->head = j;
        pe->tail = pe->tail != NULL ? pe->tail : j;
    } else if (pe->tail != NULL) {
        pe->tail->next = j;
        pe->tail = j;
    } else {
        pe->head = pe->tail = j;
    }
    pe->queued++;
    pe->queued_bytes += j->len;
    pthread_cond_broadcast(&pe->cond);
}

static void enqueue(struct pyeval *pe, struct job *j) {
    pthread_mutex_lock(&pe->mu);
    enqueue_locked(pe, j, false);
    pthread_mutex_unlock(&pe->mu);
}

void pyeval_start_app(struct pyeval *pe) {
    char path[4200];
    snprintf(path, sizeof(path), "%s%s", pe->root,
             pe->cfg.safe_mode ? "/safemode/main.py" : "/main.py");
    if (access(path, R_OK) != 0) {
        return;
    }
    struct job *j = calloc(1, sizeof(*j));
    j->app = strdup(path);
    enqueue(pe, j);
}

bool pyeval_submit(struct pyeval *pe, const char *id, char *src, size_t len, bool json) {
    pthread_mutex_lock(&pe->mu);
    bool room = pe->queued < JOBS_MAX && pe->queued_bytes + len <= QUEUED_SRC_MAX;
    if (room) {
        struct job *j = calloc(1, sizeof(*j));
        snprintf(j->id, sizeof(j->id), "%s", id);
        j->src = src;
        j->len = len;
        j->json = json;
        enqueue_locked(pe, j, false);
    }
    pthread_mutex_unlock(&pe->mu);
    if (!room) {
        free(src);
    }
    return room;
}

void pyeval_probe(struct pyeval *pe) {
    pthread_mutex_lock(&pe->mu);
    if (pe->running && pe->cur != NULL && !pe->done) {
        // Busy: the signal handler answers as soon as the interpreter runs Python code.
        pe->probe_pending = true;
        pthread_kill(pe->thread, INTERRUPT_SIGNAL);
    } else if (pe->head == NULL || !pe->head->probe) {
        struct job *j = calloc(1, sizeof(*j));
        j->probe = true;
        enqueue_locked(pe, j, true);
    }
    pthread_mutex_unlock(&pe->mu);
}

// Removes the queued job of id; the caller holds mu. Returns false when none is queued.
static bool unqueue_locked(struct pyeval *pe, const char *id) {
    for (struct job **pp = &pe->head, *prev = NULL; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
        struct job *j = *pp;
        if (j->src != NULL && strcmp(j->id, id) == 0) {
            *pp = j->next;
            if (pe->tail == j) {
                pe->tail = prev;
            }
            pe->queued--;
            pe->queued_bytes -= j->len;
            free(j->src);
            free(j);
            return true;
        }
    }
    return false;
}

// Sends the interrupt to the running eval; the caller holds mu.
static void interrupt_locked(struct pyeval *pe) {
    snprintf(pe->intr_id, sizeof(pe->intr_id), "%s", pe->cur->id);
    pthread_kill(pe->thread, INTERRUPT_SIGNAL);
}

bool pyeval_renew(struct pyeval *pe, const char *id, uint64_t until) {
    bool found = false;
    pthread_mutex_lock(&pe->mu);
    if (pe->running && pe->cur != NULL && pe->cur->src != NULL && !pe->done &&
        strcmp(pe->cur->id, id) == 0) {
        pe->cur->lease_end = until;
        found = true;
    }
    for (struct job *j = pe->head; !found && j != NULL; j = j->next) {
        if (j->src != NULL && strcmp(j->id, id) == 0) {
            j->lease_end = until;
            found = true;
        }
    }
    pthread_mutex_unlock(&pe->mu);
    return found;
}

int pyeval_expire(struct pyeval *pe, uint64_t now, char *id, size_t cap) {
    int what = 0;
    pthread_mutex_lock(&pe->mu);
    struct job *c = pe->cur;
    if (pe->running && c != NULL && c->src != NULL && !pe->done && c->lease_end != 0 &&
        now >= c->lease_end) {
        snprintf(id, cap, "%s", c->id);
        interrupt_locked(pe);
        c->lease_end = now + 1000; // again each second while it goes on
        what = 1;
    }
    for (struct job *j = pe->head; what == 0 && j != NULL; j = j->next) {
        if (j->src != NULL && j->lease_end != 0 && now >= j->lease_end) {
            snprintf(id, cap, "%s", j->id);
            unqueue_locked(pe, id);
            what = 2;
        }
    }
    pthread_mutex_unlock(&pe->mu);
    return what;
}

bool pyeval_busy(struct pyeval *pe, struct pyeval_busy *b) {
    memset(b, 0, sizeof(*b));
    pthread_mutex_lock(&pe->mu);
    struct job *c = pe->cur;
    bool busy = pe->running && c != NULL && c->src != NULL && !pe->done;
    if (busy) {
        snprintf(b->id, sizeof(b->id), "%s", c->id);
        size_t n = c->len < sizeof(b->what) - 1 ? c->len : sizeof(b->what) - 1;
        memcpy(b->what, c->src, n);
        b->what[n] = '\0';
        b->ms = pyeval_now_ms() - c->started;
    }
    for (struct job *j = pe->head; j != NULL; j = j->next) {
        b->queued += j->src != NULL;
    }
    pthread_mutex_unlock(&pe->mu);
    return busy || b->queued > 0;
}

// True when a reset the eval asked for waits among the events (mu held).
static bool reset_pending(const struct pyeval *pe) {
    for (const struct event_node *n = pe->ev_head; n != NULL; n = n->next) {
        if (n->ev.kind == PYEVAL_RESET) {
            return true;
        }
    }
    return false;
}

bool pyeval_take(struct pyeval *pe, size_t max, size_t min, struct pyeval_chunk *out) {
    bool took = false;
    pthread_mutex_lock(&pe->mu);
    if (pe->running && pe->done && reset_pending(pe)) {
        // The eval asked for a reset and ended: the loop announces the reset (its event)
        // before this eval's last reply leaves (docs/protocol.md, "resetting").
        pthread_mutex_unlock(&pe->mu);
        return false;
    }
    // A JSON job's output is taken whole, once it is done.
    if (pe->running && pe->cur->json && !pe->done) {
        min = SIZE_MAX;
        max = SIZE_MAX;
    }
    if (pe->running && (pe->done || (pe->out_len >= min && pe->out_len > 0))) {
        size_t n = pe->out_len < max ? pe->out_len : max;
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", pe->cur->id);
        out->data = malloc(n ? n : 1);
        out->len = n;
        out->json = pe->cur->json;
        if (n > 0) {
            memcpy(out->data, pe->out, n);
            memmove(pe->out, pe->out + n, pe->out_len - n);
            pe->out_len -= n;
        }
        out->done = pe->done && pe->out_len == 0;
        if (out->done) {
            out->error = pe->error;
            out->result = pe->result;
            out->is_exec = pe->is_exec;
            pe->running = false;
            free(pe->cur->src);
            free(pe->cur);
            pe->cur = NULL;
            pe->queued--;
        }
        pthread_cond_broadcast(&pe->cond);
        took = true;
    }
    pthread_mutex_unlock(&pe->mu);
    return took;
}

bool pyeval_has_output(struct pyeval *pe) {
    pthread_mutex_lock(&pe->mu);
    bool has = pe->running && (pe->out_len > 0 || pe->done);
    pthread_mutex_unlock(&pe->mu);
    return has;
}

bool pyeval_take_event(struct pyeval *pe, struct pyeval_event *out) {
    pthread_mutex_lock(&pe->mu);
    struct event_node *n = pe->ev_head;
    if (n != NULL) {
        pe->ev_head = n->next;
        if (pe->ev_head == NULL) {
            pe->ev_tail = NULL;
        }
        pe->ev_count--;
    }
    pthread_mutex_unlock(&pe->mu);
    if (n == NULL) {
        return false;
    }
    *out = n->ev;
    free(n);
    return true;
}

enum pyeval_hit pyeval_interrupt(struct pyeval *pe, const char *id) {
    enum pyeval_hit hit = PYEVAL_MISS;
    pthread_mutex_lock(&pe->mu);
    if (pe->running && pe->cur != NULL && pe->cur->src != NULL && !pe->done &&
        (id == NULL || strcmp(id, pe->cur->id) == 0)) {
        interrupt_locked(pe);
        hit = PYEVAL_HIT_RUNNING;
    } else if (id != NULL && unqueue_locked(pe, id)) {
        hit = PYEVAL_HIT_QUEUED;
    }
    pthread_mutex_unlock(&pe->mu);
    return hit;
}

bool pyeval_known(struct pyeval *pe, const char *id) {
    pthread_mutex_lock(&pe->mu);
    bool known = pe->running && strcmp(pe->cur->id, id) == 0;
    for (struct job *j = pe->head; !known && j != NULL; j = j->next) {
        known = strcmp(j->id, id) == 0;
    }
    pthread_mutex_unlock(&pe->mu);
    return known;
}

unsigned pyeval_pending(struct pyeval *pe) {
    pthread_mutex_lock(&pe->mu);
    unsigned n = pe->queued;
    pthread_mutex_unlock(&pe->mu);
    return n;
}
