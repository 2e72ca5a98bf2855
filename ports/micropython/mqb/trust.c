// The board's keys and signatures with the firmware's mbedTLS (docs/security.md): ECDSA P-256
// over SHA-256 for the engine's hooks, the board's own key (made here, never leaving the
// board), the authorized keys and the trust command (its rules are the core's, as on mqrepld).
#include <stdlib.h>

#include "modmqb.h"

#if MQB_TRUST
// ---- signatures (ECDSA P-256 over SHA-256, the firmware's mbedTLS) ----

// The port's random source (what extmod/mbedtls feeds the ssl module's entropy from), as an
// mbedTLS random generator for the signatures' nonces and new keys.
static int rng(void *p, unsigned char *out, size_t n) {
    (void)p;
    mp_hal_get_random(n, out);
    return 0;
}

static void digest(const uint8_t *head, size_t hlen, const uint8_t *data, size_t dlen,
                   uint8_t out[32]) {
    mbedtls_sha256_context c;
    mbedtls_sha256_init(&c);
    mbedtls_sha256_starts(&c, 0);
    mbedtls_sha256_update(&c, head, hlen);
    mbedtls_sha256_update(&c, data, dlen);
    mbedtls_sha256_finish(&c, out);
    mbedtls_sha256_free(&c);
}

enum mqb_err mqb_mp_sig_verify(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                               size_t hlen, const uint8_t *data, size_t dlen,
                               const uint8_t sig[MQB_SIG_LEN]) {
    (void)ctx;
    uint8_t h[32];
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi r, s;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    digest(head, hlen, data, dlen, h);
    int rc = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    if (rc == 0) {
        rc = mbedtls_ecp_point_read_binary(&grp, &q, pub, MQB_PUBKEY_LEN);
    }
    if (rc == 0) {
        rc = mbedtls_mpi_read_binary(&r, sig, 32);
    }
    if (rc == 0) {
        rc = mbedtls_mpi_read_binary(&s, sig + 32, 32);
    }
    if (rc == 0) {
        rc = mbedtls_ecdsa_verify(&grp, h, sizeof(h), &q, &r, &s);
    }
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return rc == 0 ? MQB_OK : MQB_ERR_AUTH_SIG;
}

static enum mqb_err sign_digest(mqb_obj_t *self, const uint8_t h[32], uint8_t sig[MQB_SIG_LEN]) {
    if (!self->have_key) {
        return MQB_ERR_IO;
    }
    mbedtls_ecp_group grp;
    mbedtls_mpi d, r, s;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int rc = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    if (rc == 0) {
        rc = mbedtls_mpi_read_binary(&d, self->key_d, sizeof(self->key_d));
    }
    if (rc == 0) {
        rc = mbedtls_ecdsa_sign(&grp, &r, &s, &d, h, 32, rng, NULL);
    }
    if (rc == 0) {
        rc = mbedtls_mpi_write_binary(&r, sig, 32);
    }
    if (rc == 0) {
        rc = mbedtls_mpi_write_binary(&s, sig + 32, 32);
    }
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&grp);
    return rc == 0 ? MQB_OK : MQB_ERR_IO;
}

enum mqb_err mqb_mp_sig_sign(void *ctx, const uint8_t *head, size_t hlen, const uint8_t *data,
                             size_t dlen, uint8_t sig[MQB_SIG_LEN]) {
    uint8_t h[32];
    digest(head, hlen, data, dlen, h);
    return sign_digest(ctx, h, sig);
}

// keygen(): a new private key (32 bytes), made here.
static mp_obj_t engine_keygen(mp_obj_t self_in) {
    (void)self_in;
    mbedtls_ecp_keypair kp;
    uint8_t d[32];
    size_t n = 0;
    mbedtls_ecp_keypair_init(&kp);
    int rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, &kp, rng, NULL);
    if (rc == 0) {
        rc = mbedtls_ecp_write_key_ext(&kp, &n, d, sizeof(d));
    }
    mbedtls_ecp_keypair_free(&kp);
    if (rc != 0 || n != sizeof(d)) {
        mp_raise_OSError(MP_EIO);
    }
    return mp_obj_new_bytes(d, sizeof(d));
}
MP_DEFINE_CONST_FUN_OBJ_1(engine_keygen_obj, engine_keygen);

// set_key(d, boot_id[, keys_dir]): the board's private key, this boot's id (8 bytes) and
// the directory of its keys (release_keys and image_version are read there); returns the
// public point (65 bytes).
static mp_obj_t engine_set_key(size_t n_args, const mp_obj_t *args) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_buffer_info_t d, boot;
    mp_get_buffer_raise(args[1], &d, MP_BUFFER_READ);
    mp_get_buffer_raise(args[2], &boot, MP_BUFFER_READ);
    const char *dir = n_args > 3 ? mp_obj_str_get_str(args[3]) : "";
    if (strlen(dir) >= sizeof(self->keys_dir)) {
        mp_raise_ValueError(MP_ERROR_TEXT("keys directory name too long"));
    }
    if (d.len != sizeof(self->key_d) || boot.len != MQB_BOOTID_LEN) {
        mp_raise_ValueError(MP_ERROR_TEXT("key of 32 bytes, boot id of 8"));
    }
    mbedtls_ecp_keypair kp;
    uint8_t pub[MQB_PUBKEY_LEN];
    size_t n = 0;
    mbedtls_ecp_keypair_init(&kp);
    int rc = mbedtls_ecp_read_key(MBEDTLS_ECP_DP_SECP256R1, &kp, d.buf, d.len);
    if (rc == 0) {
        rc = mbedtls_ecp_keypair_calc_public(&kp, rng, NULL);
    }
    if (rc == 0) {
        rc = mbedtls_ecp_write_public_key(&kp, MBEDTLS_ECP_PF_UNCOMPRESSED, &n, pub, sizeof(pub));
    }
    mbedtls_ecp_keypair_free(&kp);
    if (rc != 0 || n != sizeof(pub)) {
        mp_raise_ValueError(MP_ERROR_TEXT("not a P-256 private key"));
    }
    memcpy(self->key_d, d.buf, sizeof(self->key_d));
    memcpy(self->auth.boot_id, boot.buf, MQB_BOOTID_LEN);
    strcpy(self->keys_dir, dir);
    self->have_key = true;
    return mp_obj_new_bytes(pub, sizeof(pub));
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(engine_set_key_obj, 3, 4, engine_set_key);

// ---- the authorized keys: key lines and the trust command (core/auth.c) ----

// binascii.<fn>(data) of the firmware (its mbedTLS is built without base64): the result's
// buffer, or false when it raised (bad base64).
static bool binascii_call(qstr fn, const void *data, size_t len, mp_buffer_info_t *out) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t mod = mp_import_name(MP_QSTR_binascii, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        mp_obj_t r = mp_call_function_1(mp_load_attr(mod, fn), mp_obj_new_bytes(data, len));
        mp_get_buffer_raise(r, out, MP_BUFFER_READ);
        nlr_pop();
        return true;
    }
    return false;
}

static int ops_parse(void *ctx, const char *line, uint8_t pub[MQB_PUBKEY_LEN]) {
    (void)ctx;
    char b64[96];
    mp_buffer_info_t dec;
    size_t n = 0;
    line += strspn(line, " \t");
    if (strncmp(line, "mqb-p256 ", 9) == 0) {
        line += 9;
    }
    while (line[n] != '\0' && strchr(" \t\r\n", line[n]) == NULL && n + 1 < sizeof(b64)) {
        b64[n] = line[n];
        n++;
    }
    b64[n] = '\0';
    if (!binascii_call(MP_QSTR_a2b_base64, b64, n, &dec) || dec.len != MQB_PUBKEY_LEN ||
        ((const uint8_t *)dec.buf)[0] != 0x04) {
        return -1;
    }
    const uint8_t *buf = dec.buf;
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    int rc = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    if (rc == 0) {
        rc = mbedtls_ecp_point_read_binary(&grp, &q, buf, MQB_PUBKEY_LEN);
    }
    if (rc == 0) {
        rc = mbedtls_ecp_check_pubkey(&grp, &q); // on the curve
    }
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    memcpy(pub, buf, MQB_PUBKEY_LEN);
    return rc == 0 ? 0 : -1;
}

static void ops_sha256(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], uint8_t out[32]) {
    (void)ctx;
    digest(pub, MQB_PUBKEY_LEN, NULL, 0, out);
}

static void ops_b64(void *ctx, const uint8_t *in, size_t n, char *out) {
    (void)ctx;
    mp_buffer_info_t enc;
    size_t digits = 4 * ((n + 2) / 3);
    memset(out, '=', digits);
    if (binascii_call(MP_QSTR_b2a_base64, in, n, &enc) && enc.len >= digits) {
        memcpy(out, enc.buf, digits);
    }
    out[digits] = '\0';
}

static const struct mqb_auth_keyops keyops = {NULL, ops_parse, ops_sha256, ops_b64};

// authorize(line): the board also obeys the key of that key line (from its authorized_keys).
// False when it is not a key, or the table is full.
static mp_obj_t engine_authorize(mp_obj_t self_in, mp_obj_t line_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    uint8_t pub[MQB_PUBKEY_LEN], h[32];
    if (ops_parse(NULL, mp_obj_str_get_str(line_in), pub) != 0) {
        return mp_const_false;
    }
    digest(pub, sizeof(pub), NULL, 0, h);
    return mp_obj_new_bool(mqb_auth_add_key(&self->auth, h, pub) == MQB_OK);
}
MP_DEFINE_CONST_FUN_OBJ_2(engine_authorize_obj, engine_authorize);

// trust(arg, apply): the trust command's data on the board's keys (the rules of core/auth.c,
// as mqrepld): (reply text, refused, the new authorized_keys text or None when nothing
// changed). Without apply the keys stay as they are, so that the board package saves the new
// text first and then applies it: a save that fails changes nothing.
static mp_obj_t engine_trust(mp_obj_t self_in, mp_obj_t arg_in, mp_obj_t apply_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    size_t len;
    const char *arg = mp_obj_str_get_data(arg_in, &len);
    struct mqb_auth copy = self->auth;
    struct mqb_auth *a = mp_obj_is_true(apply_in) ? &self->auth : &copy;
    char out[MQB_AUTH_KEYS_MAX * MQB_FPR_LEN + 160];
    enum mqb_trust_result r = mqb_auth_trust(a, &keyops, arg, len, out, sizeof(out));
    mp_obj_t t[3] = {mp_obj_new_str(out, strlen(out)), mp_obj_new_bool(r == MQB_TRUST_FAILED),
                     mp_const_none};
    if (r == MQB_TRUST_CHANGED) {
        vstr_t v;
        vstr_init(&v, a->nkeys * 100);
        for (unsigned i = 0; i < a->nkeys; i++) {
            char b64[4 * ((MQB_PUBKEY_LEN + 2) / 3) + 1];
            ops_b64(NULL, a->keys[i].pub, MQB_PUBKEY_LEN, b64);
            vstr_add_str(&v, "mqb-p256 ");
            vstr_add_str(&v, b64);
            vstr_add_char(&v, '\n');
        }
        t[2] = mp_obj_new_str_from_vstr(&v);
    }
    return mp_obj_new_tuple(3, t);
}
MP_DEFINE_CONST_FUN_OBJ_3(engine_trust_obj, engine_trust);

// sign_status(topic, text): the signature of a status text (64 bytes, docs/protocol.md).
static mp_obj_t engine_sign_status(mp_obj_t self_in, mp_obj_t topic_in, mp_obj_t text_in) {
    mqb_obj_t *self = MP_OBJ_TO_PTR(self_in);
    size_t tlen;
    const char *text = mp_obj_str_get_data(text_in, &tlen);
    uint8_t head[MQB_AUTH_HEAD_MAX], zero[32] = {0}, h[32], sig[MQB_SIG_LEN];
    size_t hl =
        mqb_auth_reply_head(head, sizeof(head), mp_obj_str_get_str(topic_in), NULL, 0, zero);
    digest(head, hl, (const uint8_t *)text, tlen, h);
    if (hl == 0 || sign_digest(self, h, sig) != MQB_OK) {
        mp_raise_OSError(MP_EIO);
    }
    return mp_obj_new_bytes(sig, sizeof(sig));
}
MP_DEFINE_CONST_FUN_OBJ_3(engine_sign_status_obj, engine_sign_status);

// ---- signed firmware: release keys and the recorded version (core/auth.c's rule) ----

// The board's small file dir/name (at most cap - 1 bytes, NUL-terminated): its length, or -1
// when it cannot be read. Through the firmware's open, whatever the filesystem.
static mp_int_t read_small(const char *dir, const char *name, char *buf, size_t cap) {
    char path[sizeof(((mqb_obj_t *)0)->keys_dir) + 24];
    vstr_t v;
    vstr_init_fixed_buf(&v, sizeof(path), path);
    vstr_printf(&v, "%s/%s", dir, name);
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t a[2] = {mp_obj_new_str(path, v.len), MP_OBJ_NEW_QSTR(MP_QSTR_rb)};
        mp_obj_t f = mp_call_function_n_kw(MP_OBJ_FROM_PTR(&mp_builtin_open_obj), 2, 0, a);
        int err = 0;
        mp_uint_t n = mp_stream_rw(f, buf, cap - 1, &err, MP_STREAM_RW_READ);
        mp_stream_close(f);
        nlr_pop();
        buf[err == 0 ? n : 0] = '\0';
        return err == 0 ? (mp_int_t)n : -1;
    }
    return -1;
}

// Records the image's version in dir/image_version (a new file renamed over the old; on FAT,
// where rename does not replace, the old is removed first). False when it cannot.
static bool record_version(const char *dir, uint64_t version) {
    char path[sizeof(((mqb_obj_t *)0)->keys_dir) + 24], text[24];
    vstr_t p, t;
    vstr_init_fixed_buf(&p, sizeof(path), path);
    vstr_printf(&p, "%s/image_version", dir);
    size_t plen = p.len;
    vstr_add_str(&p, ".new");
    vstr_init_fixed_buf(&t, sizeof(text), text);
    vstr_printf(&t, "%lu\n", (unsigned long)version);
    nlr_buf_t nlr;
    if (nlr_push(&nlr) != 0) {
        return false;
    }
    mp_obj_t target = mp_obj_new_str(path, plen), tmp = mp_obj_new_str(path, p.len);
    mp_obj_t a[2] = {tmp, MP_OBJ_NEW_QSTR(MP_QSTR_wb)};
    mp_obj_t f = mp_call_function_n_kw(MP_OBJ_FROM_PTR(&mp_builtin_open_obj), 2, 0, a);
    int err = 0;
    mp_stream_rw(f, text, t.len, &err, MP_STREAM_RW_WRITE);
    mp_stream_close(f);
    if (err == 0) {
        nlr_buf_t fat;
        if (nlr_push(&fat) == 0) {
            mp_vfs_rename(tmp, target);
            nlr_pop();
        } else { // FAT: no rename over a file
            mp_vfs_remove(target);
            mp_vfs_rename(tmp, target);
        }
    }
    nlr_pop();
    return err == 0;
}

static bool verify_release(void *ctx, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                           size_t hlen, const uint8_t sig[MQB_SIG_LEN]) {
    return mqb_mp_sig_verify(ctx, pub, head, hlen, NULL, 0, sig) == MQB_OK;
}

enum mqb_err mqb_mp_ota_check(void *ctx, const uint8_t sha256[MQB_SHA256_LEN], const char *extra) {
    mqb_obj_t *self = ctx;
    uint8_t pubs[MQB_AUTH_KEYS_MAX][MQB_PUBKEY_LEN];
    unsigned n = 0;
    char buf[MQB_AUTH_KEYS_MAX * 128 + 64];
    if (self->have_key && self->keys_dir[0] != '\0' &&
        read_small(self->keys_dir, "release_keys", buf, sizeof(buf)) > 0) {
        for (char *line = buf; line != NULL && *line != '\0' && n < MQB_AUTH_KEYS_MAX;) {
            char *nl = strchr(line, '\n');
            if (nl != NULL) {
                *nl = '\0';
            }
            n += line[strspn(line, " \t\r")] != '#' && ops_parse(NULL, line, pubs[n]) == 0;
            line = nl != NULL ? nl + 1 : NULL;
        }
    }
    if (n == 0) {
        return MQB_OK; // no release keys: any image (its hash was checked)
    }
    uint64_t recorded = 0, version = 0;
    if (read_small(self->keys_dir, "image_version", buf, sizeof(buf)) > 0) {
        recorded = strtoull(buf, NULL, 10);
    }
    enum mqb_err err = mqb_auth_image_check((const uint8_t(*)[MQB_PUBKEY_LEN])pubs, n, sha256,
                                            extra, recorded, verify_release, self, &version);
    if (err == MQB_OK && !record_version(self->keys_dir, version)) {
        err = MQB_ERR_IO;
    }
    return err;
}
#endif
