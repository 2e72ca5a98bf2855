// ECDSA P-256 keys over OpenSSL for mqrepld and mqboard (sigkey.h).
#define _GNU_SOURCE
#include "sigkey.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_TYPE "mqb-p256"

EVP_PKEY *sigkey_generate(void) {
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

int sigkey_save(EVP_PKEY *k, const char *path, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        snprintf(err, errlen, "cannot create '%s': %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    bool ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        snprintf(err, errlen, "cannot write '%s'", path);
        unlink(path);
        return -1;
    }
    return 0;
}

EVP_PKEY *sigkey_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "re");
    struct stat st;
    if (f == NULL) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || (st.st_mode & 077) != 0) {
        snprintf(err, errlen, "'%s' may be read by other users (mode %04o): chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
        fclose(f);
        return NULL;
    }
    // A decoder for exactly this format: OpenSSL's generic PEM reader tries every decoder
    // it has, which costs a command's start-up milliseconds.
    EVP_PKEY *k = NULL;
    OSSL_DECODER_CTX *dc = OSSL_DECODER_CTX_new_for_pkey(&k, "PEM", "PrivateKeyInfo", "EC",
                                                         OSSL_KEYMGMT_SELECT_KEYPAIR, NULL, NULL);
    BIO *bio = BIO_new_fp(f, BIO_NOCLOSE);
    if (dc == NULL || bio == NULL || OSSL_DECODER_from_bio(dc, bio) != 1) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    BIO_free(bio);
    OSSL_DECODER_CTX_free(dc);
    fclose(f);
    uint8_t pub[MQB_PUBKEY_LEN];
    if (k == NULL || sigkey_public(k, pub) != 0) {
        snprintf(err, errlen, "'%s' is not an ECDSA P-256 private key (PEM)", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int sigkey_public(EVP_PKEY *k, uint8_t pub[MQB_PUBKEY_LEN]) {
    char group[32];
    size_t n = 0;
    if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) !=
            1 ||
        strcmp(group, "prime256v1") != 0) {
        return -1;
    }
    if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, MQB_PUBKEY_LEN,
                                        &n) != 1 ||
        n != MQB_PUBKEY_LEN || pub[0] != 0x04) {
        return -1;
    }
    return 0;
}

EVP_PKEY *sigkey_from_public(const uint8_t pub[MQB_PUBKEY_LEN]) {
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    if (b != NULL && c != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub, MQB_PUBKEY_LEN) == 1 &&
        (params = OSSL_PARAM_BLD_to_param(b)) != NULL && EVP_PKEY_fromdata_init(c) == 1) {
        if (EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            k = NULL;
        }
    }
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(c);
    return k;
}

void sigkey_b64(const uint8_t *in, size_t n, char *out) {
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

int sigkey_line(const uint8_t pub[MQB_PUBKEY_LEN], const char *comment, char *out, size_t cap) {
    char b64[4 * ((MQB_PUBKEY_LEN + 2) / 3) + 1];
    sigkey_b64(pub, MQB_PUBKEY_LEN, b64);
    int n = snprintf(out, cap, LINE_TYPE " %s%s%s", b64, comment != NULL && *comment ? " " : "",
                     comment != NULL ? comment : "");
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int sigkey_parse_form(const char *line, uint8_t pub[MQB_PUBKEY_LEN]) {
    while (*line == ' ' || *line == '\t') {
        line++;
    }
    if (strncmp(line, LINE_TYPE " ", sizeof(LINE_TYPE)) == 0) {
        line += sizeof(LINE_TYPE);
    }
    size_t len = strcspn(line, " \t\r\n");
    uint8_t buf[3 * ((4 * ((MQB_PUBKEY_LEN + 2) / 3)) / 4)];
    if (len != 4 * ((MQB_PUBKEY_LEN + 2) / 3) ||
        EVP_DecodeBlock(buf, (const unsigned char *)line, (int)len) < MQB_PUBKEY_LEN) {
        return -1;
    }
    memcpy(pub, buf, MQB_PUBKEY_LEN);
    return pub[0] == 0x04 ? 0 : -1;
}

int sigkey_parse(const char *line, uint8_t pub[MQB_PUBKEY_LEN]) {
    if (sigkey_parse_form(line, pub) != 0) {
        return -1;
    }
    EVP_PKEY *k = sigkey_from_public(pub); // on the curve?
    EVP_PKEY_free(k);
    return k != NULL ? 0 : -1;
}

void sigkey_fingerprint(const uint8_t pub[MQB_PUBKEY_LEN], char out[SIGKEY_FPR_LEN]) {
    uint8_t md[32];
    char b64[48];
    EVP_Digest(pub, MQB_PUBKEY_LEN, md, NULL, EVP_sha256(), NULL);
    sigkey_b64(md, sizeof(md), b64);
    b64[strcspn(b64, "=")] = '\0';
    snprintf(out, SIGKEY_FPR_LEN, "SHA256:%s", b64);
}

void sigkey_id(const uint8_t pub[MQB_PUBKEY_LEN], uint8_t id[MQB_KEYID_LEN]) {
    uint8_t md[32];
    EVP_Digest(pub, MQB_PUBKEY_LEN, md, NULL, EVP_sha256(), NULL);
    memcpy(id, md, MQB_KEYID_LEN);
}

int sigkey_sign(EVP_PKEY *k, const uint8_t *head, size_t hlen, const uint8_t *data, size_t dlen,
                uint8_t sig[MQB_SIG_LEN]) {
    uint8_t der[80];
    size_t derlen = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = -1;
    if (md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
        EVP_DigestSignUpdate(md, head, hlen) == 1 && EVP_DigestSignUpdate(md, data, dlen) == 1 &&
        EVP_DigestSignFinal(md, der, &derlen) == 1) {
        const unsigned char *p = der;
        ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
        if (s != NULL && BN_bn2binpad(ECDSA_SIG_get0_r(s), sig, 32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(s), sig + 32, 32) == 32) {
            rc = 0;
        }
        ECDSA_SIG_free(s);
    }
    EVP_MD_CTX_free(md);
    return rc;
}

bool sigkey_verify_key(EVP_PKEY *k, const uint8_t *head, size_t hlen, const uint8_t *data,
                       size_t dlen, const uint8_t sig[MQB_SIG_LEN]) {
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *sv = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int derlen = -1;
    if (s != NULL && r != NULL && sv != NULL && ECDSA_SIG_set0(s, r, sv) == 1) {
        r = sv = NULL; // owned by s
        derlen = i2d_ECDSA_SIG(s, &der);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = k != NULL && md != NULL && derlen > 0 &&
              EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
              EVP_DigestVerifyUpdate(md, head, hlen) == 1 &&
              EVP_DigestVerifyUpdate(md, data, dlen) == 1 &&
              EVP_DigestVerifyFinal(md, der, (size_t)derlen) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(s);
    return ok;
}

bool sigkey_verify(const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head, size_t hlen,
                   const uint8_t *data, size_t dlen, const uint8_t sig[MQB_SIG_LEN]) {
    EVP_PKEY *k = sigkey_from_public(pub);
    bool ok = sigkey_verify_key(k, head, hlen, data, dlen, sig);
    EVP_PKEY_free(k);
    return ok;
}
