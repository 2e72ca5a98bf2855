// mqrepld's keys (docs/security.md): the board's own key pair, made at first start in the
// --keys directory and never sent anywhere; the operators' keys it obeys (authorized_keys);
// the signed `trust` command that changes them; the signed status.
#ifndef AGENT_TRUST_H
#define AGENT_TRUST_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#include "mqb/auth.h"

struct trust {
    char dir[4096];  // --keys; empty: no keys at all (nothing signed, anything obeyed)
    EVP_PKEY *board; // the board's private key
    uint8_t pub[MQB_PUBKEY_LEN];
    struct mqb_auth auth;                // the authorized keys and this boot's replay windows
    EVP_PKEY *parsed[MQB_AUTH_KEYS_MAX]; // auth.keys, parsed once for verifying
};

// Opens (creating at first start) DIR/board_key and reads DIR/authorized_keys. boot_id is
// the status's 16 hex digits. -1 with the reason printed.
int trust_open(struct trust *t, const char *dir, const char *boot_id);
void trust_close(struct trust *t);

// The `trust` command's data: "list", "add KEYLINE", "remove FINGERPRINT|KEYLINE". Writes the
// reply text (the list, or what changed) into out; false when refused (out says why).
bool trust_command(struct trust *t, const char *data, size_t len, char *out, size_t cap);

// Whether a received image (sha256 checked) may be installed: with release keys in
// DIR/release_keys, only an image signed by one (extra: "/VERSION/SIGHEX[/downgrade]"), and
// not below the version recorded in DIR/image_version unless "downgrade"; the version is
// then recorded. Without release keys any image goes, as before.
enum mqb_err trust_image(struct trust *t, const uint8_t sha256[32], const char *extra);

// Verifies a command's signature by the authorized key pub (the engine's hook).
bool trust_verify(struct trust *t, const uint8_t pub[MQB_PUBKEY_LEN], const uint8_t *head,
                  size_t hlen, const uint8_t *data, size_t dlen, const uint8_t sig[MQB_SIG_LEN]);

// Signs the status JSON text: returns a malloc'd copy with "sig" as its last member.
char *trust_sign_status(struct trust *t, const char *topic, const char *json);

#endif
