// The mqb module as a dynamic native module (mqb.mpy), for a stock firmware: the same
// modmqb.c, built against MicroPython's dynamic runtime, with the type and the module made at
// load time (a native module has no static MicroPython objects). Without the firmware's
// mbedTLS and scheduler it has no signed commands and cannot interrupt an eval that prints
// nothing (docs/micropython.md says what each form does).
#include "../mqb/modmqb.c"

// The C library functions the core uses: a native module links no libc. These follow the
// C standard's definitions and nothing more.
size_t strlen(const char *s) {
    const char *p = s;
    while (*p != '\0') {
        p++;
    }
    return (size_t)(p - s);
}

int strcmp(const char *a, const char *b) {
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

char *strcpy(char *dst, const char *src) {
    char *d = dst;
    while ((*d++ = *src++) != '\0') {
    }
    return dst;
}

char *strncpy(char *dst, const char *src, size_t n) {
    size_t i = 0;
    for (; i < n && src[i] != '\0'; i++) {
        dst[i] = src[i];
    }
    for (; i < n; i++) {
        dst[i] = '\0';
    }
    return dst;
}

char *strchr(const char *s, int c) {
    for (;; s++) {
        if (*s == (char)c) {
            return (char *)s;
        }
        if (*s == '\0') {
            return NULL;
        }
    }
}

size_t strcspn(const char *s, const char *reject) {
    size_t n = 0;
    while (s[n] != '\0' && strchr(reject, s[n]) == NULL) {
        n++;
    }
    return n;
}

void *memchr(const void *s, int c, size_t n) {
    const unsigned char *p = s;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == (unsigned char)c) {
            return (void *)(p + i);
        }
    }
    return NULL;
}

int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            return x[i] - y[i];
        }
    }
    return 0;
}

#if !defined(__linux__)
void *memcpy(void *dst, const void *src, size_t n) {
    return mp_fun_table.memmove_(dst, src, n);
}
void *memset(void *s, int c, size_t n) {
    return mp_fun_table.memset_(s, c, n);
}
#endif
void *memmove(void *dst, const void *src, size_t n) {
    return mp_fun_table.memmove_(dst, src, n);
}

mp_obj_full_type_t mqb_type_engine;
mp_map_elem_t engine_locals_table[10]; // not static: bss in a native module must not be
static MP_DEFINE_CONST_DICT(engine_locals, engine_locals_table);

static void method(size_t i, qstr name, const void *fun) {
    engine_locals_table[i] = (mp_map_elem_t){MP_OBJ_NEW_QSTR(name), MP_OBJ_FROM_PTR(fun)};
}

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    mqb_type_engine.base.type = (void *)&mp_type_type;
    mqb_type_engine.flags = MP_TYPE_FLAG_NONE;
    mqb_type_engine.name = MP_QSTR_Engine;
    MP_OBJ_TYPE_SET_SLOT(&mqb_type_engine, make_new, engine_make_new, 0);
    method(0, MP_QSTR_input, &engine_input_obj);
    method(1, MP_QSTR_pump, &engine_pump_obj);
    method(2, MP_QSTR_take, &engine_take_obj);
    method(3, MP_QSTR_event, &engine_event_obj);
    method(4, MP_QSTR_busy, &engine_busy_obj);
    method(5, MP_QSTR_close, &engine_close_obj);
    method(6, MP_QSTR_verify, &engine_verify_obj);
    method(7, MP_QSTR_reply, &engine_reply_obj);
    method(8, MP_QSTR_reply_err, &engine_reply_err_obj);
    method(9, MP_QSTR_publish_signed, &engine_publish_signed_obj);
    MP_OBJ_TYPE_SET_SLOT(&mqb_type_engine, locals_dict, (void *)&engine_locals, 1);

    mp_store_global(MP_QSTR_Engine, MP_OBJ_FROM_PTR(&mqb_type_engine));
    mp_store_global(MP_QSTR_boot_mode, MP_OBJ_FROM_PTR(&mqb_boot_mode_obj));
    mp_store_global(MP_QSTR_rtc_word, MP_OBJ_FROM_PTR(&mqb_rtc_word_obj));
    mp_store_global(MP_QSTR_CHUNK, MP_OBJ_NEW_SMALL_INT(MQB_CHUNK_MAX));
    mp_store_global(MP_QSTR_WINDOW, MP_OBJ_NEW_SMALL_INT(MQB_WINDOW));
    mp_store_global(MP_QSTR_ENGINE_BYTES, MP_OBJ_NEW_SMALL_INT(sizeof(mqb_obj_t)));

    MP_DYNRUNTIME_INIT_EXIT
}
