// The _mqb module: what the embedded Python side (ports/linux/mpcompat/_board.py, _remote.py)
// reaches of the agent in C: output and log lines, resets, the watchdog, questions to the
// host (keyboard input, /remote's files), the mount, the agent's paths and version.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pyeval.h"
#include "pyeval_state.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct pyeval *the_pe; // the _mqb module reaches the evaluator through this

void pymodule_attach(struct pyeval *pe) {
    the_pe = pe;
}

static PyObject *mqb_write(PyObject *self, PyObject *arg) {
    (void)self;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) {
        return NULL;
    }
    pyeval_out_append(the_pe, s, (size_t)n);
    Py_RETURN_NONE;
}

static PyObject *mqb_log(PyObject *self, PyObject *args) {
    (void)self;
    const char *letter, *msg;
    if (!PyArg_ParseTuple(args, "ss", &letter, &msg)) {
        return NULL;
    }
    size_t n = strlen(msg);
    char *line = malloc(n + 3);
    line[0] = strchr("CEWID", letter[0]) != NULL && letter[0] != '\0' ? letter[0] : 'I';
    line[1] = ' ';
    memcpy(line + 2, msg, n + 1);
    pyeval_post_event(the_pe, PYEVAL_LOG, line, 0);
    free(line);
    Py_RETURN_NONE;
}

// True when the calling code is an eval that arrived through the broker (not the
// application's own threads).
static bool in_eval(struct pyeval *pe) {
    pthread_mutex_lock(&pe->mu);
    bool yes = pthread_equal(pthread_self(), pe->thread) && pe->cur != NULL && pe->cur->src;
    pthread_mutex_unlock(&pe->mu);
    return yes;
}

static PyObject *mqb_reset(PyObject *self, PyObject *arg) {
    (void)self;
    const char *mode = PyUnicode_AsUTF8(arg);
    if (mode == NULL) {
        return NULL;
    }
    // seconds = 1: requested through the broker (the next boot may be normal).
    pyeval_post_event(the_pe, PYEVAL_RESET, mode, in_eval(the_pe) ? 1 : 0);
    Py_RETURN_NONE;
}

// The handler of INTERRUPT_SIGNAL: answers the watchdog's probe (the interpreter runs Python
// code on this thread) and says whether an interrupt names the eval that runs now.
static PyObject *mqb_on_signal(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    struct pyeval *pe = the_pe;
    pthread_mutex_lock(&pe->mu);
    bool raise = pe->intr_id[0] != '\0' && pe->cur != NULL && !pe->done &&
                 strcmp(pe->intr_id, pe->cur->id) == 0;
    if (raise) {
        pe->intr_id[0] = '\0';
    }
    bool probed = pe->probe_pending;
    pe->probe_pending = false;
    pthread_mutex_unlock(&pe->mu);
    if (probed) {
        pyeval_post_event(pe, PYEVAL_WDT_FEED, NULL, 0);
    }
    return PyBool_FromLong(raise);
}

static PyObject *mqb_wdt_feed(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    pyeval_post_event(the_pe, PYEVAL_WDT_FEED, NULL, 0);
    Py_RETURN_NONE;
}

static PyObject *mqb_wdt_require(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    double seconds;
    if (!PyArg_ParseTuple(args, "sd", &name, &seconds)) {
        return NULL;
    }
    pyeval_post_event(the_pe, PYEVAL_WDT_REQUIRE, name, seconds);
    Py_RETURN_NONE;
}

static PyObject *mqb_wdt_ok(PyObject *self, PyObject *arg) {
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL) {
        return NULL;
    }
    pyeval_post_event(the_pe, PYEVAL_WDT_OK, name, 0);
    Py_RETURN_NONE;
}

static PyObject *mqb_wdt_status(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    pthread_mutex_lock(&the_pe->mu);
    PyObject *r = PyUnicode_FromString(the_pe->wdt_status ? the_pe->wdt_status : "{}");
    pthread_mutex_unlock(&the_pe->mu);
    return r;
}

void pyeval_set_wdt_status(struct pyeval *pe, const char *json) {
    char *copy = strdup(json);
    pthread_mutex_lock(&pe->mu);
    free(pe->wdt_status);
    pe->wdt_status = copy;
    pthread_mutex_unlock(&pe->mu);
}

// How long keyboard input waits for the eval's first lease (it travels right behind the
// eval, but the code may ask first); an eval nobody follows reads end of file after this.
#define STDIN_LEASE_WAIT_MS 2000

// Whom a question goes to: target 0 is the requester of the running eval, if it follows it
// (an eval with a lease: mqboard waits for it); target 1 the host that mounted /remote.
// Returns 1 (to set), 0 (the eval has no lease yet), -1 (nobody).
static int ask_target(struct pyeval *pe, int target, char *to, size_t cap) {
    if (target == 1) {
        return ask_mounted(pe->cfg.ask, to, cap) >= 0 ? 1 : -1;
    }
    pthread_mutex_lock(&pe->mu);
    struct job *c = pe->cur;
    int ok = pthread_equal(pthread_self(), pe->thread) && c != NULL && c->src != NULL && !pe->done
                 ? c->lease_end != 0
                 : -1;
    if (ok == 1) {
        snprintf(to, cap, "%s", c->id);
    }
    pthread_mutex_unlock(&pe->mu);
    return ok;
}

// Waits (GIL released) up to STDIN_LEASE_WAIT_MS for the target to be known.
static bool find_target(struct pyeval *pe, int target, char *to, size_t cap) {
    int ok = ask_target(pe, target, to, cap);
    for (int waited = 0; ok == 0 && waited < STDIN_LEASE_WAIT_MS; waited += 20) {
        Py_BEGIN_ALLOW_THREADS usleep(20 * 1000);
        Py_END_ALLOW_THREADS ok = ask_target(pe, target, to, cap);
    }
    return ok == 1;
}

// ask(target, question, timeout, max): asks the host (see ask.h) and returns its answer
// (bytes, at most max); waits with the GIL released, and stays interruptible. timeout <= 0:
// as long as the eval runs. OSError: ENODEV nobody to ask, EBUSY another question is out,
// ETIMEDOUT no answer in time.
static PyObject *mqb_ask(PyObject *self, PyObject *args) {
    (void)self;
    int target;
    Py_buffer req;
    double timeout;
    Py_ssize_t max;
    if (!PyArg_ParseTuple(args, "iy*dn", &target, &req, &timeout, &max)) {
        return NULL;
    }
    struct pyeval *pe = the_pe;
    char to[MQB_ID_MAX + 1];
    int err = !find_target(pe, target, to, sizeof(to)) ? ENODEV
              : !ask_post(pe->cfg.ask, to, req.buf, (size_t)req.len, max > 0 ? (size_t)max : 0)
                  ? EBUSY
                  : 0;
    PyBuffer_Release(&req);
    if (err != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pyeval_wake(pe);
    uint64_t end = timeout > 0 ? pyeval_now_ms() + (uint64_t)(timeout * 1000) : 0;
    uint8_t *ans = NULL;
    size_t len = 0;
    for (;;) {
        bool got;
        Py_BEGIN_ALLOW_THREADS got = ask_wait(pe->cfg.ask, 100, &ans, &len);
        Py_END_ALLOW_THREADS if (got) {
            break;
        }
        // An interrupt (Ctrl-C on the host, its lease ended) raises here.
        err = PyErr_CheckSignals() != 0                              ? -1
              : target == 1 && ask_mounted(pe->cfg.ask, NULL, 0) < 0 ? ENODEV
              : end != 0 && pyeval_now_ms() >= end                   ? ETIMEDOUT
                                                                     : 0;
        if (err != 0) {
            ask_end(pe->cfg.ask);
            if (err > 0) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            return NULL;
        }
    }
    ask_end(pe->cfg.ask);
    PyObject *r = PyBytes_FromStringAndSize((const char *)ans, (Py_ssize_t)len);
    free(ans);
    return r;
}

// mount(): None when nothing is mounted at /remote, else whether it is writable.
static PyObject *mqb_mount(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    int m = ask_mounted(the_pe->cfg.ask, NULL, 0);
    if (m < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(m);
}

static PyObject *mqb_mount_id(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    char id[MQB_ID_MAX + 1];
    if (ask_mounted(the_pe->cfg.ask, id, sizeof(id)) < 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(id);
}

static PyObject *mqb_root(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(the_pe->root);
}

static PyObject *mqb_rtc_path(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(the_pe->rtc_path);
}

static PyObject *mqb_version(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(the_pe->cfg.version);
}

static PyObject *mqb_reset_cause(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(the_pe->cfg.reset_cause);
}

static PyObject *mqb_safe_mode(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyBool_FromLong(the_pe->cfg.safe_mode);
}

static PyObject *mqb_sources(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    PyObject *d = PyDict_New();
    for (int i = 0; mpcompat_modules[i].name != NULL; i++) {
        PyObject *v = PyUnicode_FromString(mpcompat_modules[i].src);
        PyDict_SetItemString(d, mpcompat_modules[i].name, v);
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef mqb_methods[] = {
    {"write", mqb_write, METH_O, "Append text to the output of the running eval."},
    {"log", mqb_log, METH_VARARGS, "log(letter, message): a line on PREFIX/log."},
    {"reset", mqb_reset, METH_O, "Request a reset: 'n', 'f', 's' or 'h'."},
    {"on_signal", mqb_on_signal, METH_NOARGS, "The interrupt signal's work; True: raise."},
    {"wdt_feed", mqb_wdt_feed, METH_NOARGS, "The watchdog's loop-back feed."},
    {"wdt_require", mqb_wdt_require, METH_VARARGS, "Register an application check."},
    {"wdt_ok", mqb_wdt_ok, METH_O, "An application check is healthy."},
    {"wdt_status", mqb_wdt_status, METH_NOARGS, "The watchdog's state (JSON text)."},
    {"root", mqb_root, METH_NOARGS, "The board root (host path)."},
    {"rtc_path", mqb_rtc_path, METH_NOARGS, "The file emulating RTC memory."},
    {"version", mqb_version, METH_NOARGS, "The agent's version."},
    {"reset_cause", mqb_reset_cause, METH_NOARGS, "machine.reset_cause() of this boot."},
    {"safe_mode", mqb_safe_mode, METH_NOARGS, "True when booted in safe mode."},
    {"sources", mqb_sources, METH_NOARGS, "The embedded modules' sources."},
    {"ask", mqb_ask, METH_VARARGS, "ask(target, question, timeout, max): the host's answer."},
    {"mount", mqb_mount, METH_NOARGS, "None, or whether /remote is writable."},
    {"mount_id", mqb_mount_id, METH_NOARGS, "None, or the id of the mount that serves /remote."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mqb_module = {
    PyModuleDef_HEAD_INIT, "_mqb", "mqrepld internals", -1, mqb_methods, NULL, NULL, NULL, NULL,
};

PyObject *pymodule_init(void) {
    return PyModule_Create(&mqb_module);
}
