// ECDSA P-256 keys over OpenSSL, shared by mqrepld and mqboard: key files (PEM, mode
// checked), public-key lines ("mqb-p256 BASE64 comment", as OpenSSH's), fingerprints
// ("SHA256:..." as ssh-keygen -l), and signatures in the raw r||s form of the wire
// (include/mqb/auth.h). Errors are written into a caller's buffer, never printed.
#ifndef SIGKEY_H
#define SIGKEY_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/auth.h"

#define SIGKEY_LINE_MAX 512
#define SIGKEY_FPR_LEN 56 // "SHA256:" + 43 base64 characters + NUL, and room

// A new key pair (NULL on failure).
EVP_PKEY *sigkey_generate(void);

// Writes k's private key to path (PEM, PKCS#8), created with mode 0600; an existing file is
// not replaced. 0 on success.
int sigkey_save(EVP_PKEY *k, const char *path, char *err, size_t errlen);

// Reads a private key. A file other users may read or write is refused (as ssh does).
EVP_PKEY *sigkey_load(const char *path, char *err, size_t errlen);

// The public point of k (uncompressed). 0 on success.
int sigkey_public(EVP_PKEY *k, uint8_t pub[MQB_PUBKEY_LEN]);

// "mqb-p256 BASE64[ comment]" into out; 0 on success.
int sigkey_line(const uint8_t pub[MQB_PUBKEY_LEN], const char *comment, char *out, size_t cap);

// Parses a public-key line (the comment is ignored), or a bare BASE64 point; checks that the
// point is on the curve. 0 on success.
int sigkey_parse(const char *line, uint8_t pub[MQB_PUBKEY_LEN]);
// The same without the curve check (which costs OpenSSL's set-up, milliseconds at a process's
// first use): for lines this program wrote itself, whose keys are checked where they are used.
int sigkey_parse_form(const char *line, uint8_t pub[MQB_PUBKEY_LEN]);

// "SHA256:" and the unpadded base64 of the point's SHA-256.
void sigkey_fingerprint(const uint8_t pub[MQB_PUBKEY_LEN], char out[SIGKEY_FPR_LEN]);

// The key id of the wire: the first 8 bytes of the point's SHA-256.
void sigkey_id(const uint8_t pub[MQB_PUBKEY_LEN], uint8_t id[MQB_KEYID_LEN]);

// Signs SHA-256(head || data). 0 on success.
int sigkey_sign(EVP_PKEY *k, const uint8_t *head, size_t hlen, const uint8_t *data, size_t dlen,
                uint8_t sig[MQB_SIG_LEN]);

// A public key parsed once for many verifications (NULL when pub is not a P-256 point).
EVP_PKEY *sigkey_from_public(const uint8_t pub[MQB_PUBKEY_LEN]);

// Verifies a raw signature of SHA-256(head || data) by k. true when valid.
bool sigkey_verify_key(EVP_PKEY *k, const uint8_t *head, size_t hlen, const uint8_t *data,
                       size_t dlen, const uint8_t sig[MQB_SIG_LEN]);

// The same with the point (parsed for this one call).
bool sigkey_verify(const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head, size_t hlen,
                   const uint8_t *data, size_t dlen, const uint8_t sig[MQB_SIG_LEN]);

// Base64 (standard alphabet, padded) of n bytes into out (4*ceil(n/3)+1 bytes).
void sigkey_b64(const uint8_t *in, size_t n, char *out);

#endif
