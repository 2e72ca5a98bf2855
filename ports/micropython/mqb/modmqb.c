// mqb: the project's core engine as a MicroPython module. The board package (board/) owns the
// MQTT client and hands every command message to Engine.input(); what the engine publishes is
// queued here (bounded) and taken with Engine.take(), outside the engine, so that a client that
// delivers messages while it publishes (umqtt.simple) never re-enters it. Files, hashes and
// the OTA partition are reached through a Python platform object (board/mqb_platform.py), so
// the board-specific parts stay small Python objects; evals and control commands are queued
// for Python as events (an eval never runs inside the engine). Every call into Python is
// wrapped in nlr_push: an exception becomes an error code and never unwinds through the core.
#include "modmqb.h"

// ---- calls into Python that never unwind through the engine ----

// The errno of an OSError, 0 for any other exception.
static mp_int_t errno_of(mp_obj_t exc) {
#if MICROPY_ENABLE_DYNRUNTIME // a native module sees OSError by name only
    mp_obj_t args[2] = {exc, mp_load_global(MP_QSTR_OSError)};
    if (!mp_obj_is_true(mp_call_function_n_kw(mp_load_global(MP_QSTR_isinstance), 2, 0, args))) {
        return 0;
    }
    mp_obj_t v =
        mp_obj_subscr(mp_load_attr(exc, MP_QSTR_args), MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_SENTINEL);
#else
    if (!mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)),
                                 MP_OBJ_FROM_PTR(&mp_type_OSError))) {
        return 0;
    }
    mp_obj_t v = mp_obj_exception_get_value(exc);
#endif
    return mp_obj_is_small_int(v) ? MP_OBJ_SMALL_INT_VALUE(v) : 0;
}

// The mqb error for a Python exception: OSError errnos map as on POSIX, anything else is I/O.
static enum mqb_err err_of(mp_obj_t exc) {
    mp_int_t e = errno_of(exc);
    switch (e) {
    case MP_ENOENT: return MQB_ERR_NOENT;
    case MP_EISDIR: return MQB_ERR_ISDIR;
    case MP_ENOTDIR: return MQB_ERR_NOTDIR;
    case MP_EACCES:
    case MP_EPERM: return MQB_ERR_ACCESS;
    case MP_ENOSPC: return MQB_ERR_NOSPC;
    case MP_EEXIST: return MQB_ERR_ACCESS;
    default: return MQB_ERR_IO;
    }
}

// Calls obj.name(*args) (n args); *ret gets the result. Returns MQB_OK or the error.
static enum mqb_err call(mp_obj_t obj, qstr name, size_t n, const mp_obj_t *args, mp_obj_t *ret) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t m[2 + 4];
        mp_load_method(obj, name, m);
        for (size_t i = 0; i < n; i++) {
            m[2 + i] = args[i];
        }
        mp_obj_t r = mp_call_method_n_kw(n, 0, m);
        if (ret != NULL) {
            *ret = r;
        }
        nlr_pop();
        return MQB_OK;
    }
    return err_of(MP_OBJ_FROM_PTR(nlr.ret_val));
}

// Runs fn(self, arg) under nlr (allocation may raise MemoryError).
static enum mqb_err guarded(void (*fn)(mqb_obj_t *, const void *), mqb_obj_t *self,
                            const void *arg) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        fn(self, arg);
        nlr_pop();
        return MQB_OK;
    }
    return err_of(MP_OBJ_FROM_PTR(nlr.ret_val));
}

// ---- the engine's platform hooks ----

struct pub {
    const char *topic;
    const uint8_t *payload;
    size_t len;
};

static void queue_pub(mqb_obj_t *self, const void *arg) {
    const struct pub *p = arg;
    mp_obj_t t[2] = {mp_obj_new_str(p->topic, strlen(p->topic)),
                     mp_obj_new_bytes(p->payload, p->len)};
    self->out[self->out_n++] = mp_obj_new_tuple(2, t);
}

static enum mqb_err p_publish(void *ctx, const char *topic, const uint8_t *payload, size_t len) {
    mqb_obj_t *self = ctx;
    if (self->out_n >= OUT_MAX) {
        return MQB_ERR_BUSY; // out_room said no: only a reply beyond the bound gets here
    }
    struct pub p = {topic, payload, len};
    return guarded(queue_pub, self, &p);
}

static size_t p_out_room(void *ctx) {
    mqb_obj_t *self = ctx;
    return OUT_MAX - self->out_n;
}

static int free_file(mqb_obj_t *self) {
    for (int i = 0; i < FILES_MAX; i++) {
        if (self->files[i] == MP_OBJ_NULL) {
            return i;
        }
    }
    return -1;
}

static enum mqb_err p_open_read(void *ctx, const char *path, int *fh, uint64_t *size) {
    mqb_obj_t *self = ctx;
    int i = free_file(self);
    if (i < 0) {
        return MQB_ERR_BUSY;
    }
    mp_obj_t arg = mp_obj_new_str(path, strlen(path)), r;
    enum mqb_err err = call(self->plat, MP_QSTR_open_read, 1, &arg, &r);
    if (err == MQB_OK) {
        mp_obj_t *items;
        size_t n;
        mp_obj_get_array(r, &n, &items);
        if (n != 2) {
            return MQB_ERR_IO;
        }
        self->files[i] = items[0];
        *size = (uint64_t)mp_obj_get_int(items[1]);
        *fh = i;
    }
    return err;
}

static enum mqb_err p_open_write(void *ctx, const char *path, int *fh) {
    mqb_obj_t *self = ctx;
    int i = free_file(self);
    if (i < 0) {
        return MQB_ERR_BUSY;
    }
    mp_obj_t arg = mp_obj_new_str(path, strlen(path)), r;
    enum mqb_err err = call(self->plat, MP_QSTR_open_write, 1, &arg, &r);
    if (err == MQB_OK) {
        self->files[i] = r;
        *fh = i;
    }
    return err;
}

static mp_obj_t file_of(mqb_obj_t *self, int fh) {
    return fh >= 0 && fh < FILES_MAX ? self->files[fh] : MP_OBJ_NULL;
}

// Reads or writes through the stream protocol (no Python call, no allocation).
static enum mqb_err stream_rw(mp_obj_t f, void *buf, size_t len, size_t *done, byte flags) {
    nlr_buf_t nlr;
    if (f == MP_OBJ_NULL) {
        return MQB_ERR_STATE;
    }
    if (nlr_push(&nlr) == 0) {
        int errcode = 0;
#if MICROPY_ENABLE_DYNRUNTIME // mp_stream_rw, as the runtime has it
        const mp_stream_p_t *sp = mp_get_stream_raise(
            f, flags == MP_STREAM_RW_READ ? MP_STREAM_OP_READ : MP_STREAM_OP_WRITE);
        *done = 0;
        while (*done < len && errcode == 0) {
            uint8_t *p = (uint8_t *)buf + *done;
            mp_uint_t out = flags == MP_STREAM_RW_READ ? sp->read(f, p, len - *done, &errcode)
                                                       : sp->write(f, p, len - *done, &errcode);
            if (out == MP_STREAM_ERROR || out == 0) {
                break;
            }
            *done += out;
        }
#else
        *done = mp_stream_rw(f, buf, len, &errcode, flags);
#endif
        nlr_pop();
        return errcode == 0 ? MQB_OK : errcode == MP_ENOSPC ? MQB_ERR_NOSPC : MQB_ERR_IO;
    }
    return err_of(MP_OBJ_FROM_PTR(nlr.ret_val));
}

static enum mqb_err p_read(void *ctx, int fh, uint8_t *buf, size_t cap, size_t *n) {
    return stream_rw(file_of(ctx, fh), buf, cap, n, MP_STREAM_RW_READ);
}

static enum mqb_err p_write(void *ctx, int fh, const uint8_t *buf, size_t len) {
    size_t done = 0;
    enum mqb_err err = stream_rw(file_of(ctx, fh), (void *)buf, len, &done, MP_STREAM_RW_WRITE);
    return err == MQB_OK && done != len ? MQB_ERR_NOSPC : err;
}

static enum mqb_err p_close(void *ctx, int fh, bool commit) {
    mqb_obj_t *self = ctx;
    mp_obj_t f = file_of(self, fh);
    if (f == MP_OBJ_NULL) {
        return MQB_ERR_STATE;
    }
    self->files[fh] = MP_OBJ_NULL;
    mp_obj_t args[2] = {f, mp_obj_new_bool(commit)};
    return call(self->plat, fh == MQB_MAX_XFERS ? MP_QSTR_ota_close : MP_QSTR_close, 2, args, NULL);
}

static enum mqb_err p_hash_init(void *ctx, unsigned slot) {
    mqb_obj_t *self = ctx;
    return call(self->plat, MP_QSTR_sha256, 0, NULL, &self->hashes[slot]);
}

static enum mqb_err p_hash_update(void *ctx, unsigned slot, const uint8_t *data, size_t len) {
    mqb_obj_t *self = ctx;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        // A memoryview over the engine's buffer: no copy of the chunk.
#if MICROPY_ENABLE_DYNRUNTIME
        mp_obj_t mv = mp_obj_new_bytearray_by_ref(len, (void *)data);
#else
        mp_obj_t mv = mp_obj_new_memoryview('B', len, (void *)data);
#endif
        nlr_pop();
        return call(self->hashes[slot], MP_QSTR_update, 1, &mv, NULL);
    }
    return err_of(MP_OBJ_FROM_PTR(nlr.ret_val));
}

static enum mqb_err p_hash_final(void *ctx, unsigned slot, uint8_t out[MQB_SHA256_LEN]) {
    mqb_obj_t *self = ctx;
    mp_obj_t d;
    enum mqb_err err = call(self->hashes[slot], MP_QSTR_digest, 0, NULL, &d);
    self->hashes[slot] = mp_const_none;
    if (err == MQB_OK) {
        mp_buffer_info_t b;
        if (!mp_get_buffer(d, &b, MP_BUFFER_READ) || b.len != MQB_SHA256_LEN) {
            return MQB_ERR_IO;
        }
        memcpy(out, b.buf, MQB_SHA256_LEN);
    }
    return err;
}

static void push_event(mqb_obj_t *self, const void *arg) {
    const mp_obj_t *ev = arg;
    self->events[self->events_n++] = *ev;
}

static enum mqb_err add_event(mqb_obj_t *self, size_t n, const mp_obj_t *items) {
    if (self->events_n >= EVENTS_MAX) {
        return MQB_ERR_BUSY;
    }
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t ev = mp_obj_new_tuple(n, items);
        nlr_pop();
        return guarded(push_event, self, &ev);
    }
    return err_of(MP_OBJ_FROM_PTR(nlr.ret_val));
}

struct eval_part {
    const uint8_t *src;
    size_t len;
};

static void eval_append(mqb_obj_t *self, const void *arg) {
    const struct eval_part *p = arg;
    if (self->eval_buf == mp_const_none) {
#if MICROPY_ENABLE_DYNRUNTIME
        self->eval_buf = mp_call_function_n_kw(mp_load_global(MP_QSTR_bytearray), 0, 0, NULL);
#else
        self->eval_buf = mp_obj_new_bytearray(0, NULL);
#endif
    }
    mp_obj_t chunk = mp_obj_new_bytes(p->src, p->len);
    mp_obj_t m[3];
    mp_load_method(self->eval_buf, MP_QSTR_extend, m);
    m[2] = chunk;
    mp_call_method_n_kw(1, 0, m);
}

static void reply_err(mqb_obj_t *self, const char *id, const char *text) {
    mqb_engine_reply_err(&self->engine, id, text, strlen(text));
}

static enum mqb_err p_eval(void *ctx, const char *id, const uint8_t *src, size_t len, bool first,
                           bool last) {
    mqb_obj_t *self = ctx;
    if (first) {
        self->eval_buf = mp_const_none;
        strncpy(self->eval_id, id, MQB_ID_MAX);
    }
    size_t have = 0;
    if (self->eval_buf != mp_const_none) {
        mp_buffer_info_t b;
        mp_get_buffer_raise(self->eval_buf, &b, MP_BUFFER_READ);
        have = b.len;
    }
    if (have + len > EVAL_MAX || strcmp(self->eval_id, id) != 0) {
        self->eval_buf = mp_const_none;
        reply_err(self, id, "eval source too big for this board (at most 32 KB)");
        return MQB_ERR_TOOBIG;
    }
    struct eval_part part = {src, len};
    enum mqb_err err = guarded(eval_append, self, &part);
    if (err == MQB_OK && last) {
        mp_obj_t ev[3] = {MP_OBJ_NEW_QSTR(MP_QSTR_eval), mp_obj_new_str(id, strlen(id)),
                          self->eval_buf};
        self->eval_buf = mp_const_none;
        err = add_event(self, 3, ev);
        if (err == MQB_ERR_BUSY) {
            reply_err(self, id, "board busy: too many commands waiting");
        }
    }
    return err;
}

static void p_eval_abort(void *ctx, const char *id) {
    mqb_obj_t *self = ctx;
    (void)id;
    self->eval_buf = mp_const_none;
}

static enum mqb_err p_ota_open(void *ctx, int *fh) {
    mqb_obj_t *self = ctx;
    if (self->files[MQB_MAX_XFERS] != MP_OBJ_NULL) {
        return MQB_ERR_BUSY;
    }
    enum mqb_err err = call(self->plat, MP_QSTR_ota_open, 0, NULL, &self->files[MQB_MAX_XFERS]);
    if (err != MQB_OK) {
        self->files[MQB_MAX_XFERS] = MP_OBJ_NULL;
    }
    *fh = MQB_MAX_XFERS;
    return err;
}

static enum mqb_err p_ota_close(void *ctx, int fh, bool commit) {
    return p_close(ctx, fh, commit);
}

// interrupt, running, reset and trust go to Python; anything else is "not supported".
static enum mqb_err p_command(void *ctx, const char *cmd, const char *id, const char *tail,
                              const uint8_t *data, size_t len) {
    mqb_obj_t *self = ctx;
    static const char *const handled[] = {"interrupt", "running", "reset", "trust", "mount"};
    size_t i = 0;
    while (i < MP_ARRAY_SIZE(handled) && strcmp(cmd, handled[i]) != 0) {
        i++;
    }
    if (i == MP_ARRAY_SIZE(handled)) {
        return MQB_ERR_UNSUPPORTED;
    }
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t ev[4] = {mp_obj_new_str(cmd, strlen(cmd)), mp_obj_new_str(id, strlen(id)),
                          mp_obj_new_str(tail, strlen(tail)), mp_obj_new_bytes(data, len)};
        nlr_pop();
        enum mqb_err err = add_event(self, 4, ev);
        if (err == MQB_ERR_BUSY) {
            reply_err(self, id, "board busy: too many commands waiting");
        }
        return err;
    }
    return err_of(MP_OBJ_FROM_PTR(nlr.ret_val));
}

static const struct mqb_platform platform = {
#if MQB_TRUST
    .sig_verify = mqb_mp_sig_verify,
    .sig_sign = mqb_mp_sig_sign,
    .ota_check = mqb_mp_ota_check,
#endif
    .publish = p_publish,
    .out_room = p_out_room,
    .file_open_read = p_open_read,
    .file_open_write = p_open_write,
    .file_read = p_read,
    .file_write = p_write,
    .file_close = p_close,
    .hash_init = p_hash_init,
    .hash_update = p_hash_update,
    .hash_final = p_hash_final,
    .eval = p_eval,
    .eval_abort = p_eval_abort,
    .ota_open = p_ota_open,
    .ota_close = p_ota_close,
    .command = p_command,
};

// ---- the Python type ----

// A 64-bit millisecond clock from the port's 32-bit ticks (which wrap every 49.7 days).
static uint32_t ticks_ms(mqb_obj_t *self) {
#if MICROPY_ENABLE_DYNRUNTIME
    return (uint32_t)mp_obj_get_int_truncated(mp_call_function_n_kw(self->ticks_ms, 0, 0, NULL));
#else
    (void)self;
    return (uint32_t)mp_hal_ticks_ms();
#endif
}

static uint64_t now_ms(mqb_obj_t *self) {
    uint32_t t = ticks_ms(self);
    if (t < self->ticks_last) {
        self->ticks_high += (uint64_t)1 << 32;
    }
    self->ticks_last = t;
    return self->ticks_high | t;
}

#if !MICROPY_ENABLE_DYNRUNTIME
MP_REGISTER_ROOT_POINTER(mp_obj_t mqb_engine_obj);
#endif

// Engine(prefix, agent, platform)
static mp_obj_t engine_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw,
                                const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 3, 3, false);
    mqb_obj_t *self = mp_obj_malloc(mqb_obj_t, type);
    memset((char *)self + sizeof(self->base), 0, sizeof(*self) - sizeof(self->base));
    const char *prefix = mp_obj_str_get_str(args[0]);
    strncpy(self->agent, mp_obj_str_get_str(args[1]), sizeof(self->agent) - 1);
    self->plat = args[2];
    self->eval_buf = mp_const_none;
    for (int i = 0; i < FILES_MAX; i++) {
        self->files[i] = MP_OBJ_NULL;
    }
    for (int i = 0; i < MQB_HASH_SLOTS; i++) {
        self->hashes[i] = mp_const_none;
    }
    if (mqb_engine_init(&self->engine, &platform, self, prefix, self->agent) != MQB_OK) {
        mp_raise_ValueError(MP_ERROR_TEXT("prefix too long"));
    }
#if MICROPY_ENABLE_DYNRUNTIME
    mp_obj_t time = mp_import_name(MP_QSTR_time, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
    self->ticks_ms = mp_load_attr(time, MP_QSTR_ticks_ms);
#endif
    self->ticks_last = ticks_ms(self);
#if MQB_TRUST
    mqb_engine_set_auth(&self->engine, &self->auth); // no keys yet: unsigned commands run
#endif
#if !MICROPY_ENABLE_DYNRUNTIME
    MP_STATE_VM(mqb_engine_obj) = MP_OBJ_FROM_PTR(self); // keep it (and its files) for the GC
#endif
    return MP_OBJ_FROM_PTR(self);
}

// "command expired: ..." for a deadline (Unix seconds) missed by `late` seconds.
static void expired_text(char *text, size_t cap, uint32_t deadline, uint32_t late) {
#if MICROPY_ENABLE_DYNRUNTIME // no vstr and no calendar in a native module
    char d[11], l[11];
    size_t i = sizeof(d), j = sizeof(l);
    d[--i] = l[--j] = '\0';
    do {
        d[--i] = (char)('0' + deadline % 10);
    } while ((deadline /= 10) != 0);
    do {
        l[--j] = (char)('0' + late % 10);
    } while ((late /= 10) != 0);
    const char *parts[] = {"command expired: it had to start by Unix time ", d + i, ", ", l + j,
                           " s ago by the board's clock (mqboard --expire sets the limit)"};
    size_t n = 0;
    for (size_t k = 0; k < MP_ARRAY_SIZE(parts); k++) {
        for (const char *p = parts[k]; *p != '\0' && n + 1 < cap; p++) {
            text[n++] = *p;
        }
    }
    text[n] = '\0';
#else
    timeutils_struct_time_t tm;
    timeutils_seconds_since_1970_to_struct_time(deadline, &tm);
    vstr_t v;
    vstr_init_fixed_buf(&v, cap, text);
    vstr_printf(&v,
                "command expired: it had to start by %04u-%02u-%02u %02u:%02u:%02u UTC, %u s ago "
                "by the board's clock (mqboard --expire sets the limit)",
                tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                (unsigned)late);
    vstr_null_terminated_str(&v);
#endif
}

// A command whose id carries a deadline (docs/protocol.md) that has passed by the board's
// clock (unix_now: Unix seconds, 0 when the clock is not set): its first message is answered with
// an error and never runs (sent while the board was away, delivered hours later).
static bool too_late(mqb_obj_t *self, const char *topic, const uint8_t *p, size_t len,
                     mp_int_t unix_now) {
    struct mqb_topic t;
    struct mqb_hdr h;
    char id[MQB_ID_MAX + 1], text[200];
    if (unix_now <= 0 || mqb_topic_parse(self->engine.prefix, topic, strlen(topic), &t) != MQB_OK ||
        t.kind != MQB_TOPIC_CMD || mqb_hdr_decode(p, len, &h) != MQB_OK ||
        !(h.seq == 0 || mqb_hdr_is_single(&h))) {
        return false;
    }
    memcpy(id, t.id.ptr, t.id.len);
    id[t.id.len] = '\0';
    uint32_t deadline = mqb_id_deadline(id);
    if (deadline == 0 || (mp_uint_t)unix_now <= deadline) {
        return false;
    }
    expired_text(text, sizeof(text), deadline, (uint32_t)((mp_uint_t)unix_now - deadline));
    reply_err(self, id, text);
    return true;
}

// input(topic, payload[, unix_now]): one command message; unix_now is the board's clock in Unix
// seconds when it is set (0 or absent: not set, so deadlines are not checked). Returns the mqb
// error code (0: accepted).
static mp_obj_t engine_input(size_t n_args, const mp_obj_t *args) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t b;
    mp_get_buffer_raise(args[2], &b, MP_BUFFER_READ);
    const char *topic = mp_obj_str_get_str(args[1]);
    if (too_late(self, topic, b.buf, b.len, n_args > 3 ? mp_obj_get_int(args[3]) : 0)) {
        return MP_OBJ_NEW_SMALL_INT(MQB_OK);
    }
    enum mqb_err err = mqb_engine_input(&self->engine, topic, b.buf, b.len, false, now_ms(self));
    return MP_OBJ_NEW_SMALL_INT(err);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(engine_input_obj, 3, 4, engine_input);

// pump(): advances outgoing streams; True when more could be sent at once.
static mp_obj_t engine_pump(mp_obj_t self_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    return mp_obj_new_bool(mqb_engine_pump(&self->engine, now_ms(self)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(engine_pump_obj, engine_pump);

static mp_obj_t take_first(mp_obj_t *q, size_t *n) {
    if (*n == 0) {
        return mp_const_none;
    }
    mp_obj_t first = q[0];
    memmove(q, q + 1, (*n - 1) * sizeof(mp_obj_t));
    q[--*n] = MP_OBJ_NULL;
    return first;
}

// take(): the next message to publish, (topic, payload), or None.
static mp_obj_t engine_take(mp_obj_t self_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    return take_first(self->out, &self->out_n);
}
static MP_DEFINE_CONST_FUN_OBJ_1(engine_take_obj, engine_take);

// event(): the next eval ("eval", id, source) or control command (cmd, id, tail, data).
static mp_obj_t engine_event(mp_obj_t self_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    return take_first(self->events, &self->events_n);
}
static MP_DEFINE_CONST_FUN_OBJ_1(engine_event_obj, engine_event);

// busy(): transfers open.
static mp_obj_t engine_busy(mp_obj_t self_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    return MP_OBJ_NEW_SMALL_INT(mqb_engine_busy(&self->engine));
}
static MP_DEFINE_CONST_FUN_OBJ_1(engine_busy_obj, engine_busy);

// close(): aborts every transfer (temporary files are discarded).
static mp_obj_t engine_close(mp_obj_t self_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mqb_engine_deinit(&self->engine);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(engine_close_obj, engine_close);

// reply(id, seq, last, data) and reply_err(id, text): the board package's replies (eval
// output, control answers) through the engine, which signs them when it obeys signed
// commands; taken with take() as the engine's own. Return the mqb error code.
static mp_obj_t engine_reply(size_t n_args, const mp_obj_t *args) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t b;
    mp_get_buffer_raise(args[4], &b, MP_BUFFER_READ);
    return MP_OBJ_NEW_SMALL_INT(mqb_engine_reply_out(&self->engine, mp_obj_str_get_str(args[1]),
                                                     (uint16_t)mp_obj_get_int(args[2]),
                                                     mp_obj_is_true(args[3]), b.buf, b.len));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(engine_reply_obj, 5, 5, engine_reply);

static mp_obj_t engine_reply_err(mp_obj_t self_in, mp_obj_t id_in, mp_obj_t text_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    size_t n;
    const char *text = mp_obj_str_get_data(text_in, &n);
    return MP_OBJ_NEW_SMALL_INT(
        mqb_engine_reply_err(&self->engine, mp_obj_str_get_str(id_in), text, n));
}
static MP_DEFINE_CONST_FUN_OBJ_3(engine_reply_err_obj, engine_reply_err);

// verify(topic, payload): the data of a command message the board package reads itself
// (interrupts while an eval prints, keyboard answers), its signature checked and used up when
// the board obeys signed commands; None when refused.
static mp_obj_t engine_verify(mp_obj_t self_in, mp_obj_t topic_in, mp_obj_t payload_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t b;
    mp_get_buffer_raise(payload_in, &b, MP_BUFFER_READ);
    const uint8_t *data;
    size_t dlen;
    if (mqb_engine_verify(&self->engine, mp_obj_str_get_str(topic_in), b.buf, b.len, &data,
                          &dlen) != MQB_OK) {
        return mp_const_none;
    }
    return mp_obj_new_bytes(data, dlen);
}
static MP_DEFINE_CONST_FUN_OBJ_3(engine_verify_obj, engine_verify);

// publish_signed(topic, payload): a message of the board's own (a question on reply/ask),
// with a signature when the board obeys signed commands. Returns the mqb error code.
static mp_obj_t engine_publish_signed(mp_obj_t self_in, mp_obj_t topic_in, mp_obj_t payload_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t b;
    mp_get_buffer_raise(payload_in, &b, MP_BUFFER_READ);
    return MP_OBJ_NEW_SMALL_INT(mqb_engine_publish_signed(
        &self->engine, mp_obj_str_get_str(topic_in), b.buf, b.len, b.len >= 2 ? MQB_HDR_LEN : 0));
}
static MP_DEFINE_CONST_FUN_OBJ_3(engine_publish_signed_obj, engine_publish_signed);

#if !MICROPY_ENABLE_DYNRUNTIME // natmod/natmod.c builds the type and module at load
static const mp_rom_map_elem_t engine_locals_table[] = {
    {MP_ROM_QSTR(MP_QSTR_input), MP_ROM_PTR(&engine_input_obj)},
    {MP_ROM_QSTR(MP_QSTR_pump), MP_ROM_PTR(&engine_pump_obj)},
    {MP_ROM_QSTR(MP_QSTR_take), MP_ROM_PTR(&engine_take_obj)},
    {MP_ROM_QSTR(MP_QSTR_event), MP_ROM_PTR(&engine_event_obj)},
    {MP_ROM_QSTR(MP_QSTR_busy), MP_ROM_PTR(&engine_busy_obj)},
    {MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&engine_close_obj)},
    {MP_ROM_QSTR(MP_QSTR_verify), MP_ROM_PTR(&engine_verify_obj)},
    {MP_ROM_QSTR(MP_QSTR_reply), MP_ROM_PTR(&engine_reply_obj)},
    {MP_ROM_QSTR(MP_QSTR_reply_err), MP_ROM_PTR(&engine_reply_err_obj)},
    {MP_ROM_QSTR(MP_QSTR_publish_signed), MP_ROM_PTR(&engine_publish_signed_obj)},
#if MICROPY_KBD_EXCEPTION
    {MP_ROM_QSTR(MP_QSTR_interrupt_eval), MP_ROM_PTR(&engine_interrupt_eval_obj)},
    {MP_ROM_QSTR(MP_QSTR_eval_armed), MP_ROM_PTR(&engine_eval_armed_obj)},
#endif
#if MQB_TRUST
    {MP_ROM_QSTR(MP_QSTR_keygen), MP_ROM_PTR(&engine_keygen_obj)},
    {MP_ROM_QSTR(MP_QSTR_set_key), MP_ROM_PTR(&engine_set_key_obj)},
    {MP_ROM_QSTR(MP_QSTR_authorize), MP_ROM_PTR(&engine_authorize_obj)},
    {MP_ROM_QSTR(MP_QSTR_trust), MP_ROM_PTR(&engine_trust_obj)},
    {MP_ROM_QSTR(MP_QSTR_sign_status), MP_ROM_PTR(&engine_sign_status_obj)},
#endif
};
static MP_DEFINE_CONST_DICT(engine_locals, engine_locals_table);

static MP_DEFINE_CONST_OBJ_TYPE(mqb_type_engine, MP_QSTR_Engine, MP_TYPE_FLAG_NONE, make_new,
                                engine_make_new, locals_dict, &engine_locals);
#endif

// boot_mode(rtc_memory) -> (safe, cleared): the safe-mode rule of the core (True: boot safe
// mode), and the bytes to write back at once so that the next boot is normal only if this
// one earns it (mark_normal() gives the bytes that earn it).
static mp_obj_t mqb_boot_mode_fn(mp_obj_t mem_in) {
    mp_buffer_info_t b;
    mp_get_buffer_raise(mem_in, &b, MP_BUFFER_READ);
    bool safe = mqb_boot_mode(b.buf, b.len) == MQB_BOOT_SAFE;
    return mp_obj_new_bool(safe);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqb_boot_mode_obj, mqb_boot_mode_fn);

// rtc_word(normal) -> the 4 bytes of RTC memory that mean "boot normally" (True) or not.
static mp_obj_t mqb_rtc_word(mp_obj_t normal) {
    return mp_obj_new_bytes(mp_obj_is_true(normal) ? mqb_rtc_magic : mqb_rtc_cleared,
                            MQB_RTC_MAGIC_LEN);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqb_rtc_word_obj, mqb_rtc_word);

#if !MICROPY_ENABLE_DYNRUNTIME
static const mp_rom_map_elem_t mqb_globals_table[] = {
    {MP_ROM_QSTR(MP_QSTR_boot_mode), MP_ROM_PTR(&mqb_boot_mode_obj)},
    {MP_ROM_QSTR(MP_QSTR_rtc_word), MP_ROM_PTR(&mqb_rtc_word_obj)},
#if MQB_TICKER
    {MP_ROM_QSTR(MP_QSTR_ticker), MP_ROM_PTR(&mqb_ticker_obj)},
#endif
    {MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_mqb)},
    {MP_ROM_QSTR(MP_QSTR_Engine), MP_ROM_PTR(&mqb_type_engine)},
    {MP_ROM_QSTR(MP_QSTR_CHUNK), MP_ROM_INT(MQB_CHUNK_MAX)},
    {MP_ROM_QSTR(MP_QSTR_WINDOW), MP_ROM_INT(MQB_WINDOW)},
    {MP_ROM_QSTR(MP_QSTR_ENGINE_BYTES), MP_ROM_INT(sizeof(mqb_obj_t))},
};
static MP_DEFINE_CONST_DICT(mqb_globals, mqb_globals_table);

const mp_obj_module_t mqb_user_cmodule = {
    .base = {&mp_type_module},
    .globals = (mp_obj_dict_t *)&mqb_globals,
};

MP_REGISTER_MODULE(MP_QSTR_mqb, mqb_user_cmodule);
#endif
