// What lets the board package serve interrupt, running and reset while an eval runs that
// prints nothing (time.sleep(60), while True: pass). Engine.interrupt_eval() raises
// KeyboardInterrupt in the eval at its next bytecode, as Ctrl-C on the console does, and only
// while the eval runs its own code (Engine.eval_armed); the package calls it from a scheduled
// callback, where an exception it raised itself would be lost. On a board a
// machine.Timer schedules that callback. The unix port has no machine.Timer, and its
// time.sleep() waits in select() without running scheduled callbacks: there mqb.ticker()
// stands in for the timer, a thread of ours that schedules the callback and wakes the main
// thread with a signal (select returns EINTR, and time.sleep runs what is pending).
#include "modmqb.h"

#if MICROPY_KBD_EXCEPTION
// Runs from the scheduler after the package's callback returned, so the KeyboardInterrupt is
// raised at the eval's next bytecode, not in the callback (where it would be lost).
static mp_obj_t interrupt_now(mp_obj_t self_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->eval_armed) {
        mp_sched_keyboard_interrupt();
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(interrupt_now_obj, interrupt_now);

// Engine.interrupt_eval(): KeyboardInterrupt in the running eval, if one runs its own code.
static mp_obj_t engine_interrupt_eval(mp_obj_t self_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->eval_armed) {
        mp_sched_schedule(MP_OBJ_FROM_PTR(&interrupt_now_obj), self_in);
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(engine_interrupt_eval_obj, engine_interrupt_eval);

// Engine.eval_armed(flag): True while an eval runs its own code. False also drops an
// interrupt not raised yet, so that none lands in the package's code after the eval.
static mp_obj_t engine_eval_armed(mp_obj_t self_in, mp_obj_t flag) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    self->eval_armed = mp_obj_is_true(flag);
    if (!self->eval_armed && MP_STATE_MAIN_THREAD(mp_pending_exception) ==
                                 MP_OBJ_FROM_PTR(&MP_STATE_VM(mp_kbd_exception))) {
        MP_STATE_MAIN_THREAD(mp_pending_exception) = MP_OBJ_NULL;
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_2(engine_eval_armed_obj, engine_eval_armed);
#endif

#if MQB_TICKER
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

// The signal that wakes the main thread (MicroPython's threads use SIGRTMIN+5 and +6).
#define WAKE_SIGNAL (SIGRTMIN + 7)

struct mqb_ticker {
    pthread_t thread;
    pthread_t main;
    atomic_int period_ms; // 0: disarmed
    atomic_bool pending;  // scheduled and not run yet: never more than one in the queue
    mp_obj_t fn;          // what runs; set while disarmed only
};

static void on_wake(int sig) {
    (void)sig; // only to interrupt the main thread's select()
}

// Runs in the main thread, from the scheduler: the package's callback.
static mp_obj_t ticker_run(mp_obj_t arg) {
    struct mqb_ticker *t = MP_STATE_VM(mqb_ticker);
    atomic_store(&t->pending, false);
    if (atomic_load(&t->period_ms) > 0) {
        mp_call_function_1(t->fn, arg);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(ticker_run_obj, ticker_run);

static void *ticker_thread(void *arg) {
    struct mqb_ticker *t = arg;
    for (;;) {
        int ms = atomic_load(&t->period_ms);
        ms = ms > 0 ? ms : 100;
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (atomic_load(&t->period_ms) <= 0) {
            continue;
        }
        if (!atomic_load(&t->pending)) {
            atomic_store(&t->pending, true);
            if (!mp_sched_schedule(MP_OBJ_FROM_PTR(&ticker_run_obj), mp_const_none)) {
                atomic_store(&t->pending, false); // the queue is full: the next tick
            }
        }
        // Woken at every tick: a sleeping main thread runs one scheduled callback per wake-up
        // (and raises a pending exception at the next), so the queue drains.
        pthread_kill(t->main, WAKE_SIGNAL);
    }
    return NULL;
}

// ticker(fn, period_ms): fn(None) runs from the scheduler every period_ms while period_ms > 0;
// ticker(None, 0) stops it. The thread starts at the first call and lives with the process.
static mp_obj_t mqb_ticker(mp_obj_t fn, mp_obj_t period_in) {
    mp_int_t ms = mp_obj_get_int(period_in);
    struct mqb_ticker *t = MP_STATE_VM(mqb_ticker);
    if (t == NULL) {
        t = m_new_obj(struct mqb_ticker);
        memset(t, 0, sizeof(*t));
        t->main = pthread_self();
        struct sigaction sa = {.sa_handler = on_wake}; // no SA_RESTART: select returns
        sigemptyset(&sa.sa_mask);
        sigaction(WAKE_SIGNAL, &sa, NULL);
        MP_STATE_VM(mqb_ticker) = t;
        if (pthread_create(&t->thread, NULL, ticker_thread, t) != 0) {
            MP_STATE_VM(mqb_ticker) = NULL;
            mp_raise_OSError(MP_EAGAIN);
        }
    }
    atomic_store(&t->period_ms, 0);
    t->fn = fn;
    atomic_store(&t->period_ms, ms > 0 && fn != mp_const_none ? (int)ms : 0);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_2(mqb_ticker_obj, mqb_ticker);

MP_REGISTER_ROOT_POINTER(struct mqb_ticker *mqb_ticker);
#endif
