// The mqb module's shared parts: the Engine object, and what trust.c (the board's keys and
// signatures, with the firmware's mbedTLS) gives modmqb.c.
#ifndef MQB_MODMQB_H
#define MQB_MODMQB_H

#include <string.h>

#if MICROPY_ENABLE_DYNRUNTIME // the .mpy that a stock firmware loads (natmod/)
#include "py/dynruntime.h"
#include "py/stream.h"
// In the runtime's table of functions, but not named by dynruntime.h (the native emitter calls
// them so for try/except). Not for a firmware whose nlr is setjmp-based (the ESP32's).
#define mp_call_method_n_kw(n_args, n_kw, args)                                                    \
    (mp_fun_table.call_method_n_kw((n_args), (n_kw), (args)))
#undef nlr_push
#define nlr_push(buf) (mp_fun_table.nlr_push(buf))
#undef nlr_pop
#define nlr_pop() (mp_fun_table.nlr_pop())
#else
#include "py/mphal.h"
#include "py/objstr.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "py/builtin.h"
#include "extmod/vfs.h"
#include "shared/timeutils/timeutils.h"
#endif

#include "mqb/boot.h"
#include "mqb/auth.h"
#include "mqb/engine.h"

// Signed commands need the mbedTLS the firmware links for its ssl module (esp32, rp2, unix
// with MICROPY_SSL_MBEDTLS); without it the board obeys unsigned commands, as the original.
#if MICROPY_SSL_MBEDTLS
#define MQB_TRUST 1
#include "mbedtls/ecdsa.h"
#include "mbedtls/ecp.h"
#include "mbedtls/sha256.h"
#else
#define MQB_TRUST 0
#endif

// Messages the engine may have queued for the client at once; streams wait while it is full.
#define OUT_MAX 4
// Evals and control commands waiting for Python.
#define EVENTS_MAX 4
// The largest eval source collected from several messages.
#define EVAL_MAX (32 * 1024)
// File handles: MQB_MAX_XFERS transfers, plus the OTA image.
#define FILES_MAX (MQB_MAX_XFERS + 1)

typedef struct {
    mp_obj_base_t base;
    struct mqb_engine engine;
    char prefix[MQB_PREFIX_MAX + 1];
    char agent[48];
    mp_obj_t plat;
    mp_obj_t files[FILES_MAX];
    mp_obj_t hashes[MQB_HASH_SLOTS];
    mp_obj_t out[OUT_MAX]; // (topic, payload) tuples, oldest first
    size_t out_n;
    mp_obj_t events[EVENTS_MAX]; // ("eval", id, src) or (cmd, id, tail, data)
    size_t events_n;
    char eval_id[MQB_ID_MAX + 1];
    mp_obj_t eval_buf; // bytearray of the eval being collected, or None
    bool eval_armed;   // an eval runs its own code: it may be interrupted
#if MICROPY_ENABLE_DYNRUNTIME
    mp_obj_t ticks_ms; // time.ticks_ms: a native module has no mp_hal
#endif
    uint32_t ticks_last;
    uint64_t ticks_high;
#if MQB_TRUST
    struct mqb_auth auth; // the operators' keys it obeys, this boot's replay windows
    uint8_t key_d[32];    // the board's private key
    bool have_key;
    char keys_dir[48]; // where its release keys and recorded image version are
#endif
} mqb_obj_t;

#if MQB_TRUST
// The platform's signature hooks (trust.c).
enum mqb_err mqb_mp_sig_verify(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                               size_t hlen, const uint8_t *data, size_t dlen,
                               const uint8_t sig[MQB_SIG_LEN]);
enum mqb_err mqb_mp_sig_sign(void *ctx, const uint8_t *head, size_t hlen, const uint8_t *data,
                             size_t dlen, uint8_t sig[MQB_SIG_LEN]);
// The release rule for an ota image (the platform's ota_check).
enum mqb_err mqb_mp_ota_check(void *ctx, const uint8_t sha256[MQB_SHA256_LEN], const char *extra);
// Engine methods (trust.c).
MP_DECLARE_CONST_FUN_OBJ_1(engine_keygen_obj);
MP_DECLARE_CONST_FUN_OBJ_VAR(engine_set_key_obj);
MP_DECLARE_CONST_FUN_OBJ_2(engine_authorize_obj);
MP_DECLARE_CONST_FUN_OBJ_3(engine_trust_obj);
MP_DECLARE_CONST_FUN_OBJ_3(engine_sign_status_obj);
#endif

// mqb.ticker() stands in for machine.Timer on the unix port (ticker.c).
#if defined(__unix__) && MICROPY_PY_THREAD && MICROPY_ENABLE_SCHEDULER && !MICROPY_ENABLE_DYNRUNTIME
#define MQB_TICKER 1
MP_DECLARE_CONST_FUN_OBJ_2(mqb_ticker_obj);
#else
#define MQB_TICKER 0
#endif
#if MICROPY_KBD_EXCEPTION && !MICROPY_ENABLE_DYNRUNTIME
// Engine methods (ticker.c).
MP_DECLARE_CONST_FUN_OBJ_1(engine_interrupt_eval_obj);
MP_DECLARE_CONST_FUN_OBJ_2(engine_eval_armed_obj);
#endif

#endif
