// mqboard's side of trust (docs/security.md): the operator's key and the `key` command, the
// boards' keys recorded on first contact (known_boards, as ssh's known_hosts), signing
// command messages, checking signed statuses and replies, and the `trust` command.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../sigkey/sigkey.h"
#include "tool.h"

static void config_path(const char *name, char *out, size_t cap) {
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg != NULL && xdg[0] != '\0') {
        snprintf(out, cap, "%s/mqboard/%s", xdg, name);
    } else {
        snprintf(out, cap, "%s/.config/mqboard/%s", home != NULL ? home : ".", name);
    }
}

static void key_path(const struct tool_opts *o, char *out, size_t cap) {
    if (o->key != NULL) {
        snprintf(out, cap, "%s", o->key);
    } else {
        config_path("id_mqb", out, cap);
    }
}

// The key recorded for prefix in known_boards (and where): true when there is one.
static bool known_key(const char *prefix, uint8_t pub[MQB_PUBKEY_LEN], char *where, size_t cap) {
    char path[4096], line[SIGKEY_LINE_MAX + MQB_PREFIX_MAX];
    config_path("known_boards", path, sizeof(path));
    FILE *f = fopen(path, "re");
    bool found = false;
    for (int n = 1; f != NULL && !found && fgets(line, sizeof(line), f) != NULL; n++) {
        size_t plen = strcspn(line, " \t");
        found = plen == strlen(prefix) && memcmp(line, prefix, plen) == 0 &&
                sigkey_parse_form(line + plen, pub) == 0;
        snprintf(where, cap, "%s:%d", path, n);
    }
    if (f != NULL) {
        fclose(f);
    }
    return found;
}

static void record_key(const struct board_trust *bt, FILE *err, const uint8_t pub[MQB_PUBKEY_LEN]) {
    char path[4096], line[SIGKEY_LINE_MAX], fpr[SIGKEY_FPR_LEN];
    config_path("known_boards", path, sizeof(path));
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700); // CONFIG/mqboard (its parent exists in every sane home)
    *slash = '/';
    sigkey_line(pub, NULL, line, sizeof(line));
    sigkey_fingerprint(pub, fpr);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
    bool ok = f != NULL && fprintf(f, "%s %s\n", bt->prefix, line) > 0;
    ok = f != NULL && fclose(f) == 0 && ok;
    fprintf(err, "mqboard: board '%s' is new here: its key %s %s %s\n", bt->prefix, fpr,
            ok ? "is now recorded in" : "could not be recorded in", path);
}

static void boot_bytes(const char *hex, uint8_t out[MQB_BOOTID_LEN]) {
    memset(out, 0, MQB_BOOTID_LEN);
    for (unsigned i = 0; i < MQB_BOOTID_LEN && hex[2 * i] != '\0' && hex[2 * i + 1] != '\0'; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

// The status's own signature, by the key it names; the signed text is its body and "}".
static bool status_signed_by(const struct board_trust *bt, const uint8_t *p, size_t len,
                             const uint8_t pub[MQB_PUBKEY_LEN]) {
    size_t body;
    char b64[96];
    uint8_t sig[72], head[MQB_AUTH_HEAD_MAX], zero[32] = {0};
    if (!parse_status_sig(p, len, &body, b64) ||
        EVP_DecodeBlock(sig, (const unsigned char *)b64, 88) < MQB_SIG_LEN) {
        return false;
    }
    char *text = malloc(body + 1);
    memcpy(text, p, body);
    text[body] = '}';
    size_t hl = mqb_auth_reply_head(head, sizeof(head), bt->status_topic, NULL, 0, zero);
    EVP_PKEY *k = bt->pkey != NULL && memcmp(bt->pub, pub, MQB_PUBKEY_LEN) == 0
                      ? bt->pkey
                      : sigkey_from_public(pub);
    bool ok = hl > 0 && sigkey_verify_key(k, head, hl, (const uint8_t *)text, body + 1, sig);
    if (k != bt->pkey) {
        EVP_PKEY_free(k);
    }
    free(text);
    return ok;
}

void keys_trust_init(struct board_trust *bt, const char *prefix) {
    EVP_MD_CTX_free(bt->chain);
    EVP_PKEY_free(bt->pkey);
    memset(bt, 0, sizeof(*bt));
    bt->prefix = prefix;
    snprintf(bt->status_topic, sizeof(bt->status_topic), "%s/mqb/status", prefix);
}

bool keys_take_status(struct board_trust *bt, FILE *err, const uint8_t *p, size_t len,
                      const struct board_status *st) {
    uint8_t known[MQB_PUBKEY_LEN], pub[MQB_PUBKEY_LEN];
    char where[4200], fpr[SIGKEY_FPR_LEN], old[SIGKEY_FPR_LEN];
    bool is_known = known_key(bt->prefix, known, where, sizeof(where));
    bool has_key = st->key[0] != '\0' && sigkey_parse(st->key, pub) == 0;
    bt->refused = false;
    if (!has_key && !is_known) {
        bt->key_ok = bt->signed_only = false; // a board without keys (as the original)
        return true;
    }
    bt->refused = true;
    if (!has_key || !status_signed_by(bt, p, len, pub)) {
        if (!bt->forged_said) {
            fprintf(err,
                    "mqboard: board '%s': ignoring a status not signed by %s key "
                    "(someone else publishes on its topics?)\n",
                    bt->prefix, is_known ? "its recorded" : "its own");
            bt->forged_said = true;
        }
        return false;
    }
    if (is_known && memcmp(known, pub, MQB_PUBKEY_LEN) != 0) {
        sigkey_fingerprint(pub, fpr);
        sigkey_fingerprint(known, old);
        fprintf(err,
                "mqboard: WARNING: board '%s' now presents key %s, not the key recorded for it "
                "(%s, %s). Someone may be impersonating it. Refused. If the board was really "
                "re-keyed, delete that line.\n",
                bt->prefix, fpr, old, where);
        bt->forged_said = true;
        return false;
    }
    if (!is_known && strpbrk(bt->prefix, "+#*?[") == NULL) {
        record_key(bt, err, pub);
    }
    if (bt->pkey == NULL || memcmp(bt->pub, pub, MQB_PUBKEY_LEN) != 0) {
        EVP_PKEY_free(bt->pkey);
        bt->pkey = sigkey_from_public(pub);
    }
    memcpy(bt->pub, pub, MQB_PUBKEY_LEN);
    boot_bytes(st->boot_id, bt->boot);
    bt->key_ok = true;
    bt->signed_only = st->signed_only;
    bt->refused = false;
    return true;
}

// The warm-up thread: loads the operator's key and signs nothing once (OpenSSL's providers,
// random generator and curve tables are made on first use), and parses the board's recorded key.
static void *warm_up(void *arg) {
    struct signer *sg = arg;
    uint8_t sig[MQB_SIG_LEN];
    sg->key = sigkey_load(sg->path, sg->error, sizeof(sg->error));
    if (sg->key != NULL) {
        sigkey_sign(sg->key, (const uint8_t *)"", 0, NULL, 0, sig);
    }
    sg->board_key = sigkey_from_public(sg->board_pub);
    return NULL;
}

void keys_prepare(struct signer *sg, const struct tool_opts *o, const struct board_trust *bt) {
    char where[4200];
    if (sg->warming || sg->tried || !known_key(bt->prefix, sg->board_pub, where, sizeof(where))) {
        return; // a board without a recorded key: most likely no signing at all
    }
    key_path(o, sg->path, sizeof(sg->path));
    sg->tried = true;
    sg->warming = pthread_create(&sg->warm, NULL, warm_up, sg) == 0;
    if (!sg->warming) {
        sg->tried = false; // loaded when needed, on this thread
    }
}

void keys_settle(struct signer *sg, struct board_trust *bt) {
    if (sg->warming) {
        pthread_join(sg->warm, NULL);
        sg->warming = false;
    }
    if (bt != NULL && bt->pkey == NULL && sg->board_key != NULL) {
        bt->pkey = sg->board_key; // the status check's key, when the status names it
        memcpy(bt->pub, sg->board_pub, MQB_PUBKEY_LEN);
        sg->board_key = NULL;
    }
}

// Loads the operator's key (once).
static int load_key(struct signer *sg, const struct tool_opts *o, FILE *err_to,
                    const char *prefix) {
    uint8_t pub[MQB_PUBKEY_LEN];
    keys_settle(sg, NULL);
    if (!sg->tried) {
        key_path(o, sg->path, sizeof(sg->path));
        sg->key = sigkey_load(sg->path, sg->error, sizeof(sg->error));
        sg->tried = true;
    }
    if (sg->key == NULL) {
        if (!sg->failed) {
            fprintf(err_to,
                    "mqboard: board '%s' obeys signed commands only, and there is no key to sign "
                    "with: %s (make one with `mqboard key generate`, then have the board trust "
                    "it)\n",
                    prefix, sg->error);
        }
        sg->failed = true;
        return -1;
    }
    sigkey_public(sg->key, pub);
    sigkey_id(pub, sg->id);
    return 0;
}

int keys_sign(struct signer *sg, const struct tool_opts *o, FILE *err, const struct board_trust *bt,
              const char *topic, const uint8_t *payload, size_t len, uint8_t **out, size_t *olen) {
    struct mqb_topic t;
    struct mqb_hdr h;
    if (!bt->key_ok || !bt->signed_only || len < MQB_HDR_LEN ||
        mqb_topic_parse(bt->prefix, topic, strlen(topic), &t) != MQB_OK ||
        t.kind != MQB_TOPIC_CMD || mqb_hdr_decode(payload, len, &h) != MQB_OK) {
        return 0;
    }
    char cmd[MQB_CMD_MAX + 1];
    snprintf(cmd, sizeof(cmd), "%.*s", (int)t.cmd.len, t.cmd.ptr);
    if (!mqb_auth_required(cmd, &h)) {
        return 0;
    }
    if (load_key(sg, o, err, bt->prefix) != 0) {
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    sg->counter = now > sg->counter ? now : sg->counter + 1;
    struct mqb_auth_block b = {.counter = sg->counter};
    memcpy(b.keyid, sg->id, MQB_KEYID_LEN);
    memcpy(b.boot_id, bt->boot, MQB_BOOTID_LEN);
    uint8_t head[MQB_AUTH_HEAD_MAX];
    size_t hl = mqb_auth_cmd_head(head, sizeof(head), topic, payload, &b);
    if (hl == 0 ||
        sigkey_sign(sg->key, head, hl, payload + MQB_HDR_LEN, len - MQB_HDR_LEN, b.sig) != 0) {
        fprintf(err, "mqboard: cannot sign the command\n");
        return -1;
    }
    *olen = len + MQB_AUTH_BLOCK_LEN;
    *out = malloc(*olen);
    memcpy(*out, payload, MQB_HDR_LEN);
    mqb_auth_block_encode(*out + MQB_HDR_LEN, &b);
    memcpy(*out + MQB_HDR_LEN + MQB_AUTH_BLOCK_LEN, payload + MQB_HDR_LEN, len - MQB_HDR_LEN);
    return 1;
}

void keys_describe(const struct board_trust *bt, char *out, size_t cap) {
    char fpr[SIGKEY_FPR_LEN];
    if (!bt->key_ok) {
        snprintf(out, cap, "no keys: anyone who can publish on the broker controls it");
        return;
    }
    sigkey_fingerprint(bt->pub, fpr);
    snprintf(out, cap, "key %s%s", fpr,
             bt->signed_only ? ", obeys signed commands only"
                             : ", obeys unsigned commands (no authorized keys): insecure");
}

bool keys_expected(const struct board_trust *bt) {
    uint8_t pub[MQB_PUBKEY_LEN];
    char where[4200];
    return known_key(bt->prefix, pub, where, sizeof(where));
}

void keys_begin(struct board_trust *bt) {
    bt->chained = false;
    bt->chain_seq = 0;
}

void keys_free(struct signer *sg, struct board_trust *bt) {
    if (sg != NULL) {
        keys_settle(sg, NULL);
        EVP_PKEY_free(sg->key);
        EVP_PKEY_free(sg->board_key);
        sg->key = sg->board_key = NULL;
    }
    EVP_MD_CTX_free(bt->chain);
    EVP_PKEY_free(bt->pkey);
    bt->chain = NULL;
    bt->pkey = NULL;
}

// Verifies the trailer of a signed reply (its header: hlen bytes) against the chain so far.
static bool trailer_ok(struct board_trust *bt, const char *topic, const uint8_t *p, size_t len,
                       size_t hlen, bool with_chain) {
    uint8_t chain[32] = {0}, head[MQB_AUTH_HEAD_MAX];
    if (len < hlen + MQB_AUTH_TRAILER_LEN || memcmp(p + len - 4, MQB_AUTH_MAGIC, 4) != 0) {
        return false;
    }
    if (with_chain && bt->chained) {
        EVP_DigestFinal_ex(bt->chain, chain, NULL);
    }
    if (with_chain) {
        bt->chained = false;
    }
    size_t hl = mqb_auth_reply_head(head, sizeof(head), topic, p, hlen, chain);
    return hl > 0 &&
           sigkey_verify_key(bt->pkey, head, hl, p + hlen, len - hlen - MQB_AUTH_TRAILER_LEN,
                             p + len - MQB_AUTH_TRAILER_LEN);
}

bool keys_check_reply(struct board_trust *bt, FILE *err, const char *cmd, const char *topic,
                      const struct mqb_topic *t, const uint8_t *p, size_t *len, bool current) {
    if (!bt->signed_only || !bt->key_ok || strcmp(cmd, "caps") == 0 ||
        t->kind == MQB_TOPIC_REPLY_BUSY || t->kind == MQB_TOPIC_REPLY_RESET) {
        return true; // unsigned by design: a notice, or what any tool may ask
    }
    struct mqb_hdr h = {0};
    bool out = t->kind == MQB_TOPIC_REPLY_OUT;
    if (out && mqb_hdr_decode(p, *len, &h) != MQB_OK) {
        return false;
    }
    bool final = !out || h.last || mqb_hdr_is_single(&h);
    if (!final) { // a reply/out message of a stream: its data goes into the chain
        if (current && strcmp(cmd, "xget") != 0 && (h.seq & MQB_SEQ_MASK) == bt->chain_seq) {
            if (bt->chain == NULL) {
                bt->chain = EVP_MD_CTX_new();
            }
            if (!bt->chained) {
                EVP_DigestInit_ex(bt->chain, EVP_sha256(), NULL);
                bt->chained = true;
            }
            EVP_DigestUpdate(bt->chain, p + MQB_HDR_LEN, *len - MQB_HDR_LEN);
            bt->chain_seq = (uint16_t)((bt->chain_seq + 1) & MQB_SEQ_MASK);
        }
        return true;
    }
    size_t hlen = out || t->kind == MQB_TOPIC_REPLY_ASK ? MQB_HDR_LEN : 0; // err: no header
    bool ok = trailer_ok(bt, topic, p, *len, hlen, current && t->kind != MQB_TOPIC_REPLY_ASK);
    if (!ok && t->kind == MQB_TOPIC_REPLY_ERR) {
        // The board refuses what it could not verify without a signature (its sender may be
        // a tool that knows none). An error can only make the command fail, never succeed.
        return true;
    }
    if (!ok) {
        fprintf(err,
                "mqboard: board '%s': dropped a reply it did not sign (someone else "
                "publishes on its topics?)\n",
                bt->prefix);
        return false;
    }
    *len -= MQB_AUTH_TRAILER_LEN;
    return true;
}

static int key_generate(const char *path) {
    char err[512], line[SIGKEY_LINE_MAX], pubpath[4200], fpr[SIGKEY_FPR_LEN];
    uint8_t pub[MQB_PUBKEY_LEN];
    char *dir = strdup(path); // its directories, as mkdir -p (mode 0700)
    for (char *p = dir + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(dir, 0700);
        *p = '/';
    }
    free(dir);
    EVP_PKEY *k = sigkey_generate();
    if (k == NULL || sigkey_save(k, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "mqboard: key generate: %s\n", k == NULL ? "cannot generate" : err);
        EVP_PKEY_free(k);
        return EXIT_LOCAL;
    }
    sigkey_public(k, pub);
    EVP_PKEY_free(k);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    char comment[320];
    snprintf(comment, sizeof(comment), "%s@%s", getenv("USER") != NULL ? getenv("USER") : "", host);
    sigkey_line(pub, comment, line, sizeof(line));
    snprintf(pubpath, sizeof(pubpath), "%s.pub", path);
    FILE *f = fopen(pubpath, "w");
    if (f == NULL || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0) {
        fprintf(stderr, "mqboard: key generate: cannot write %s\n", pubpath);
        return EXIT_LOCAL;
    }
    sigkey_fingerprint(pub, fpr);
    printf("%s\nprivate key: %s (mode 0600)\npublic key:  %s\n", fpr, path, pubpath);
    return EXIT_OK;
}

// A private key file, or a public one (KEY.pub, as ssh-keygen -l takes both).
static int key_show(const char *path) {
    char err[512], line[SIGKEY_LINE_MAX] = "", fpr[SIGKEY_FPR_LEN];
    uint8_t pub[MQB_PUBKEY_LEN];
    FILE *f = fopen(path, "re");
    bool is_pub = f != NULL && fgets(line, sizeof(line), f) != NULL && sigkey_parse(line, pub) == 0;
    if (f != NULL) {
        fclose(f);
    }
    EVP_PKEY *k = is_pub ? NULL : sigkey_load(path, err, sizeof(err));
    if (!is_pub && k == NULL) {
        fprintf(stderr, "mqboard: key: %s\n", err);
        return EXIT_LOCAL;
    }
    if (!is_pub) {
        sigkey_public(k, pub);
        EVP_PKEY_free(k);
    }
    sigkey_line(pub, NULL, line, sizeof(line));
    sigkey_fingerprint(pub, fpr);
    printf("%s\n%s\n", fpr, line);
    return EXIT_OK;
}

static int key_list(void) {
    char path[4096], line[SIGKEY_LINE_MAX + MQB_PREFIX_MAX], fpr[SIGKEY_FPR_LEN];
    config_path("known_boards", path, sizeof(path));
    FILE *f = fopen(path, "re");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        uint8_t pub[MQB_PUBKEY_LEN];
        size_t plen = strcspn(line, " \t");
        if (sigkey_parse(line + plen, pub) == 0) {
            sigkey_fingerprint(pub, fpr);
            printf("%.*s %s\n", (int)plen, line, fpr);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return EXIT_OK;
}

int keys_image_tail(const char *image, const char *sha_hex, bool downgrade, char *out, size_t cap) {
    char path[4200], line[512], hex[2 * MQB_SIG_LEN + 2];
    unsigned long long version;
    snprintf(path, sizeof(path), "%s.sig", image);
    FILE *f = fopen(path, "re");
    snprintf(out, cap, "%s", sha_hex);
    if (f == NULL) {
        return EXIT_OK; // unsigned: a board with release keys refuses it (and says so)
    }
    bool ok = fgets(line, sizeof(line), f) != NULL &&
              sscanf(line, "mqb-image-1 %llu %129s", &version, hex) == 2 && strlen(hex) == 128;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "mqboard: ota: '%s' is not a release signature (mqboard key sign)\n", path);
        return EXIT_LOCAL;
    }
    snprintf(out, cap, "%s/%llu/%s%s", sha_hex, version, hex, downgrade ? "/downgrade" : "");
    return EXIT_OK;
}

// key sign IMAGE VERSION: the release signature of a firmware image, into IMAGE.sig.
static int key_sign(const char *keyfile, const char *image, const char *ver) {
    char err[512], path[4200], *end;
    unsigned long long version = strtoull(ver, &end, 10);
    if (*end != '\0' || ver[0] == '\0' || ver[0] == '-') {
        fprintf(stderr, "mqboard: key sign: VERSION is a whole number, not '%s'\n", ver);
        return EXIT_USAGE;
    }
    EVP_PKEY *k = sigkey_load(keyfile, err, sizeof(err));
    if (k == NULL) {
        fprintf(stderr, "mqboard: key sign: %s\n", err);
        return EXIT_LOCAL;
    }
    uint8_t md[32], head[64], sig[MQB_SIG_LEN], buf[65536];
    FILE *f = fopen(image, "rb");
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    size_t n;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    while (f != NULL && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
        EVP_DigestUpdate(c, buf, n);
    }
    EVP_DigestFinal_ex(c, md, NULL);
    EVP_MD_CTX_free(c);
    bool ok = f != NULL && !ferror(f);
    if (f != NULL) {
        fclose(f);
    }
    size_t hl = mqb_auth_image_head(head, sizeof(head), md, version);
    ok = ok && sigkey_sign(k, head, hl, NULL, 0, sig) == 0;
    EVP_PKEY_free(k);
    snprintf(path, sizeof(path), "%s.sig", image);
    FILE *out = ok ? fopen(path, "w") : NULL;
    ok = out != NULL && fprintf(out, "mqb-image-1 %llu ", version) > 0;
    for (size_t i = 0; ok && i < MQB_SIG_LEN; i++) {
        ok = fprintf(out, "%02x", sig[i]) > 0;
    }
    ok = out != NULL && fprintf(out, "\n") > 0 && fclose(out) == 0 && ok;
    if (!ok) {
        fprintf(stderr, "mqboard: key sign: cannot read '%s' or write '%s'\n", image, path);
        return EXIT_LOCAL;
    }
    printf("%s: version %llu, signed\n", path, version);
    return EXIT_OK;
}

int cmd_key(struct tool *t, int argc, char **argv) {
    char path[4096];
    key_path(&t->opts, path, sizeof(path));
    const char *sub = argc >= 2 ? argv[1] : "";
    if (argc == 3 && strcmp(argv[2], "-") != 0) {
        snprintf(path, sizeof(path), "%s", argv[2]);
    }
    if (argc <= 3 && strcmp(sub, "generate") == 0) {
        return key_generate(path);
    }
    if (argc <= 3 && strcmp(sub, "show") == 0) {
        return key_show(path);
    }
    if (argc == 2 && strcmp(sub, "list") == 0) {
        return key_list();
    }
    if (argc == 4 && strcmp(sub, "sign") == 0) {
        key_path(&t->opts, path, sizeof(path));
        return key_sign(path, argv[2], argv[3]);
    }
    fprintf(stderr,
            "usage: mqboard key generate|show [FILE]  (default %s)\n"
            "       mqboard key list                 (the boards' keys known here)\n"
            "       mqboard [--key RELEASEKEY] key sign IMAGE VERSION   (writes IMAGE.sig)\n",
            path);
    return EXIT_USAGE;
}

int cmd_trust(struct tool *t, int argc, char **argv) {
    char data[SIGKEY_LINE_MAX + 16];
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        snprintf(data, sizeof(data), "list");
    } else if (argc == 3 && strcmp(argv[1], "add") == 0) {
        FILE *f = fopen(argv[2], "r");
        char line[SIGKEY_LINE_MAX] = "";
        uint8_t pub[MQB_PUBKEY_LEN];
        bool ok = f != NULL && fgets(line, sizeof(line), f) != NULL && sigkey_parse(line, pub) == 0;
        if (f != NULL) {
            fclose(f);
        }
        if (!ok) {
            fprintf(stderr, "mqboard: trust add: '%s' is not a public key file (KEY.pub)\n",
                    argv[2]);
            return EXIT_LOCAL;
        }
        sigkey_line(pub, NULL, line, sizeof(line));
        snprintf(data, sizeof(data), "add %s", line);
    } else if (argc == 3 && strcmp(argv[1], "remove") == 0 && strlen(argv[2]) < 200) {
        snprintf(data, sizeof(data), "remove %s", argv[2]);
    } else {
        fprintf(stderr, "usage: mqboard trust list | add KEY.pub | remove SHA256:FINGERPRINT\n");
        return EXIT_USAGE;
    }
    struct session *s = &t->session;
    int code = session_connect(t);
    code = code == EXIT_OK ? session_present(s) : code;
    if (code == EXIT_OK && !s->trust.key_ok) {
        tool_error(t,
                   "trust: board '%s' has no key of its own (mqrepld without --keys, or an "
                   "original board): it cannot check signatures",
                   t->opts.prefix);
        return EXIT_BOARD;
    }
    code = code == EXIT_OK ? session_begin(s, "trust") : code;
    code = code == EXIT_OK ? session_send(s, NULL, 0, true, (const uint8_t *)data, strlen(data))
                           : code;
    struct reply r;
    if (code == EXIT_OK) {
        code = session_recv(s, -1, &r);
        code = code == RECV_INTERRUPT ? EXIT_INTERRUPTED : code;
    }
    if (code == EXIT_OK && r.is_err) {
        code = report_board_error(t, &r);
    } else if (code == EXIT_OK) {
        fwrite(r.data, 1, r.len, t->out);
        if (r.len > 0 && r.data[r.len - 1] != '\n') {
            fputc('\n', t->out);
        }
    }
    session_end(s);
    return code;
}
