// Embedded CPython for eval: the evaluator thread, the eval-else-exec runner (in Python, see
// RUNNER below), live output capture with back-pressure, and interrupts via a real signal.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pyeval.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Output a running eval may buffer before its writes block (back-pressure from the host).
#define OUT_MAX (1024 * 1024)
// The signal that interrupts the evaluator thread (bound to default_int_handler in Python).
#define INTERRUPT_SIGNAL SIGUSR2

struct job {
    char id[MQB_ID_MAX + 1];
    char *src;
    size_t len;
    struct job *next;
};

struct pyeval {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; // jobs queued, output drained
    struct job *head, *tail;
    int wake_fd;
    char root[4096];
    // The running (or finished, not yet drained) eval, under mu.
    bool running;
    char cur_id[MQB_ID_MAX + 1];
    uint8_t *out;
    size_t out_len, out_cap;
    bool done;
    char *error;
    int started; // 1 ok, -1 failed
};

static struct pyeval *the_pe; // the _mqb module's write() reaches the evaluator through this

// Runs src as the console REPL would: as an expression if it compiles as one, else as one
// interactive statement (whose expression values are shown, as `import os; os.listdir()` at
// the REPL), else as a block of statements; returns (output-suffix, error-text). The helper's own
// frame is cut from tracebacks so that users see only their code.
static const char RUNNER[] =
    "import sys, traceback, _mqb\n"
    "class _MqbOut:\n"
    "    encoding = 'utf-8'\n"
    "    def write(self, s):\n"
    "        if not isinstance(s, str):\n"
    "            raise TypeError('write() argument must be str, not ' + type(s).__name__)\n"
    "        _mqb.write(s)\n"
    "        return len(s)\n"
    "    def flush(self):\n"
    "        pass\n"
    "    def isatty(self):\n"
    "        return False\n"
    "def _mqb_run(src, g):\n"
    "    try:\n"
    "        try:\n"
    "            code = compile(src, '<stdin>', 'eval')\n"
    "        except SyntaxError:\n"
    "            try:\n"
    "                code = compile(src, '<stdin>', 'single')\n"
    "            except SyntaxError:\n"
    "                code = compile(src, '<stdin>', 'exec')\n"
    "        r = eval(code, g)\n"
    "        return ('' if r is None else repr(r), None)\n"
    "    except BaseException as ex:\n"
    "        tb = ex.__traceback__\n"
    "        if tb is not None and tb.tb_frame.f_code is _mqb_run.__code__:\n"
    "            tb = tb.tb_next\n"
    "        return ('', ''.join(traceback.format_exception(type(ex), ex, tb)))\n"
    "    finally:\n"
    "        sys.stdout.flush()\n"
    "sys.stdout = sys.stderr = _MqbOut()\n";

static void wake(struct pyeval *pe) {
    char b = 1;
    ssize_t r = write(pe->wake_fd, &b, 1);
    (void)r; // a full pipe already means "wake up"
}

// Appends to the current output, waiting (with the GIL released) while the buffer is full.
static void out_append(struct pyeval *pe, const char *s, size_t n) {
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&pe->mu);
    while (n > 0) {
        while (pe->out_len >= OUT_MAX) {
            pthread_cond_wait(&pe->cond, &pe->mu);
        }
        size_t room = OUT_MAX - pe->out_len;
        size_t take = n < room ? n : room;
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
        wake(pe);
    }
    pthread_mutex_unlock(&pe->mu);
    Py_END_ALLOW_THREADS
}

static PyObject *mqb_write(PyObject *self, PyObject *arg) {
    (void)self;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) {
        return NULL;
    }
    out_append(the_pe, s, (size_t)n);
    Py_RETURN_NONE;
}

static PyMethodDef mqb_methods[] = {
    {"write", mqb_write, METH_O, "Append text to the output of the running eval."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mqb_module = {
    PyModuleDef_HEAD_INIT, "_mqb", "mqrepld internals", -1, mqb_methods, NULL, NULL, NULL, NULL,
};

static PyObject *mqb_init(void) {
    return PyModule_Create(&mqb_module);
}

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
    pe->error = NULL;
    pe->out_len = 0;
    snprintf(pe->cur_id, sizeof(pe->cur_id), "%s", j->id);
    pthread_mutex_unlock(&pe->mu);
    return j;
}

static void finish_job(struct pyeval *pe, const char *suffix, size_t n, const char *error) {
    if (n > 0) {
        out_append(pe, suffix, n);
    }
    pthread_mutex_lock(&pe->mu);
    pe->error = error != NULL ? strdup(error) : NULL;
    pe->done = true;
    wake(pe);
    pthread_mutex_unlock(&pe->mu);
}

// Runs one job with the GIL held.
static void run_job(struct pyeval *pe, PyObject *runner, PyObject *globals, struct job *j) {
    PyObject *src = PyUnicode_DecodeUTF8(j->src, (Py_ssize_t)j->len, "replace");
    PyObject *res = src ? PyObject_CallFunctionObjArgs(runner, src, globals, NULL) : NULL;
    Py_XDECREF(src);
    const char *suffix = "";
    Py_ssize_t n = 0;
    const char *error = NULL;
    if (res != NULL && PyTuple_Check(res) && PyTuple_Size(res) == 2) {
        suffix = PyUnicode_AsUTF8AndSize(PyTuple_GetItem(res, 0), &n);
        PyObject *e = PyTuple_GetItem(res, 1);
        error = e == Py_None ? NULL : PyUnicode_AsUTF8(e);
    }
    if (res == NULL || suffix == NULL) {
        PyErr_Clear();
        suffix = "";
        n = 0;
        error = "internal error: the eval runner failed\n";
    }
    finish_job(pe, suffix, (size_t)n, error);
    Py_XDECREF(res);
}

static int init_python(struct pyeval *pe, PyObject **runner, PyObject **globals) {
    PyImport_AppendInittab("_mqb", mqb_init);
    Py_InitializeEx(0);
    if (chdir(pe->root) != 0) {
        perror("mqrepld: chdir to the board root");
        return -1;
    }
    PyObject *main = PyImport_AddModule("__main__"); // borrowed
    *globals = PyModule_GetDict(main);               // borrowed
    PyObject *ns = PyDict_New();
    PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins());
    PyObject *r = PyRun_String(RUNNER, Py_file_input, ns, ns);
    // Interrupts arrive as a real signal so that blocking calls (time.sleep) wake up too.
    PyObject *r2 = PyRun_String("import signal\nsignal.signal(" Py_STRINGIFY(
                                    INTERRUPT_SIGNAL) ", signal.default_int_handler)\n",
                                Py_file_input, ns, ns);
    if (r == NULL || r2 == NULL) {
        PyErr_Print();
        return -1;
    }
    Py_DECREF(r);
    Py_DECREF(r2);
    *runner = PyDict_GetItemString(ns, "_mqb_run");
    Py_INCREF(*runner);
    Py_DECREF(ns);
    return 0;
}

static void *eval_thread(void *arg) {
    struct pyeval *pe = arg;
    PyObject *runner = NULL, *globals = NULL;
    int rc = init_python(pe, &runner, &globals);
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
        run_job(pe, runner, globals, j);
        ts = PyEval_SaveThread();
        free(j->src);
        free(j);
    }
    return NULL;
}

struct pyeval *pyeval_start(const char *root, int wake_fd) {
    struct pyeval *pe = calloc(1, sizeof(*pe));
    pthread_mutex_init(&pe->mu, NULL);
    pthread_cond_init(&pe->cond, NULL);
    pe->wake_fd = wake_fd;
    snprintf(pe->root, sizeof(pe->root), "%s", root);
    the_pe = pe;
    // Only the evaluator thread takes the interrupt signal.
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, INTERRUPT_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, &old);
    if (pthread_create(&pe->thread, NULL, eval_thread, pe) != 0) {
        free(pe);
        return NULL;
    }
    pthread_sigmask(SIG_BLOCK, &set, NULL);
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

void pyeval_submit(struct pyeval *pe, const char *id, char *src, size_t len) {
    struct job *j = calloc(1, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->src = src;
    j->len = len;
    pthread_mutex_lock(&pe->mu);
    if (pe->tail != NULL) {
        pe->tail->next = j;
    } else {
        pe->head = j;
    }
    pe->tail = j;
    pthread_cond_broadcast(&pe->cond);
    pthread_mutex_unlock(&pe->mu);
}

bool pyeval_take(struct pyeval *pe, size_t max, size_t min, struct pyeval_chunk *out) {
    bool took = false;
    pthread_mutex_lock(&pe->mu);
    if (pe->running && (pe->done || pe->out_len >= min) && (pe->out_len > 0 || pe->done)) {
        size_t n = pe->out_len < max ? pe->out_len : max;
        snprintf(out->id, sizeof(out->id), "%s", pe->cur_id);
        out->data = malloc(n ? n : 1);
        memcpy(out->data, pe->out, n);
        out->len = n;
        memmove(pe->out, pe->out + n, pe->out_len - n);
        pe->out_len -= n;
        out->done = pe->done && pe->out_len == 0;
        out->error = NULL;
        if (out->done) {
            out->error = pe->error;
            pe->error = NULL;
            pe->running = false;
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

bool pyeval_interrupt(struct pyeval *pe, const char *id) {
    bool hit = false;
    pthread_mutex_lock(&pe->mu);
    if (pe->running && !pe->done && (id == NULL || strcmp(id, pe->cur_id) == 0)) {
        pthread_kill(pe->thread, INTERRUPT_SIGNAL);
        hit = true;
    }
    pthread_mutex_unlock(&pe->mu);
    return hit;
}
