// mqboard ota: an image streamed into the board's inactive slot (hash, and a release
// signature when there is one, in the topic), and with --confirm the reset into it and the
// wait until the board marked it valid or rolled back.
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remote.h"
#include "tool.h"
#include "transfer.h"

// What the status said before an update (the evidence of a rollout).
struct board_seen {
    int slot, pending;
    char boot_id[40];
};

static void seen_now(const struct session *s, struct board_seen *b) {
    b->slot = s->slot;
    b->pending = s->pending;
    snprintf(b->boot_id, sizeof(b->boot_id), "%s", s->boot_id);
}

static cJSON *seen_json(const struct board_seen *b) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "slot", b->slot);
    cJSON_AddStringToObject(j, "image", b->pending == 1 ? "pending" : "valid");
    cJSON_AddStringToObject(j, "boot_id", b->boot_id);
    return j;
}

static bool status_shows_slot(const struct session *s, const void *unused) {
    (void)unused;
    return s->online == 1 && s->slot >= 0 && s->boot_id[0] != '\0';
}

// The update is decided: a new boot that runs the other slot with its image confirmed
// (updated), or a new boot back on the old slot (rolled back).
static bool update_decided(const struct session *s, const void *ctx) {
    const struct board_seen *before = ctx;
    return s->online == 1 && s->boot_id[0] != '\0' && strcmp(s->boot_id, before->boot_id) != 0 &&
           (s->slot == before->slot || s->pending == 0);
}

// ota --confirm: reset into the new image and wait until the board has marked it valid, or
// rolled back to the old one. Prints the outcome with the status before and after.
static int confirm_update(struct tool *t, const struct board_seen *before, double wait_s) {
    struct session *s = &t->session;
    char *reset[] = {"reset", "--no-wait", NULL};
    int code = cmd_reset(t, 2, reset);
    code = code != EXIT_OK ? code : session_watch(s, wait_s, update_decided, before);
    struct board_seen after;
    seen_now(s, &after);
    const char *outcome = code == RECV_INTERRUPT                   ? "interrupted"
                          : code == EXIT_TIMEOUT && s->online == 0 ? "offline"
                          : code != EXIT_OK                        ? "failed"
                          : s->slot == before->slot                ? "rolled back"
                                                                   : "updated";
    code = code == RECV_INTERRUPT ? EXIT_INTERRUPTED
           : code != EXIT_OK      ? code
           : outcome[0] == 'u'    ? EXIT_OK
                                  : EXIT_BOARD;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "outcome", outcome);
    cJSON_AddItemToObject(r, "before", seen_json(before));
    cJSON_AddItemToObject(r, "after", seen_json(&after));
    t->result = r;
    if (!t->opts.json) {
        fprintf(code == EXIT_OK ? t->out : t->err, "%s: slot %d -> %d, image %s, boot %s -> %s%s\n",
                outcome, before->slot, after.slot, after.pending == 1 ? "pending" : "valid",
                before->boot_id, after.boot_id,
                code == EXIT_TIMEOUT ? " (not decided in time: --wait)" : "");
    }
    return code;
}

int cmd_ota(struct tool *t, int argc, char **argv) {
    bool confirm = t->opts.canary > 0, downgrade = false;
    double wait_s = 120;
    const char *image = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--confirm") == 0) {
            confirm = true;
        } else if (strcmp(argv[i], "--allow-downgrade") == 0) {
            downgrade = true;
        } else if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc) {
            char *end;
            wait_s = strtod(argv[++i], &end);
            image = *end != '\0' || !(wait_s > 0 && wait_s <= 86400) ? NULL : image;
            argc = *end != '\0' || !(wait_s > 0 && wait_s <= 86400) ? 0 : argc;
        } else if (image == NULL && argv[i][0] != '-') {
            image = argv[i];
        } else {
            argc = 0;
        }
    }
    if (image == NULL || argc == 0) {
        fprintf(stderr,
                "usage: mqboard ota [--confirm] [--wait SECONDS] [--allow-downgrade] IMAGE\n");
        return EXIT_USAGE;
    }
    FILE *f;
    uint64_t size;
    struct board_caps caps;
    char sha[SHA256_HEX + 1];
    int code = open_local(t, image, &f, &size);
    if (code != EXIT_OK) {
        return code;
    }
    code = file_sha256(f, sha);
    char tail[SHA256_HEX + 256];
    if (code == EXIT_OK) {
        code = keys_image_tail(image, sha, downgrade, tail, sizeof(tail));
    }
    if (code == EXIT_OK) {
        code = session_connect(t);
    }
    struct board_seen before;
    if (code == EXIT_OK && confirm) { // the evidence starts with the status (it may come late)
        code = session_present(&t->session);
        session_watch(&t->session, 3.0, status_shows_slot, NULL);
    }
    seen_now(&t->session, &before);
    if (code == EXIT_OK && confirm && (before.slot < 0 || before.boot_id[0] == '\0')) {
        tool_error(t, "ota --confirm needs a board whose status shows its slot (mqrepld --slots)");
        code = EXIT_BOARD;
    }
    if (code == EXIT_OK) {
        code = session_caps(&t->session, &caps);
    }
    if (code == EXIT_OK) {
        code = stream_up(t, f, size, "ota", tail, &caps, "ota", NULL);
    }
    fclose(f);
    if (code == EXIT_OK && confirm) {
        return confirm_update(t, &before, wait_s);
    }
    if (code == EXIT_OK && !t->opts.json) {
        fprintf(t->out, "OTA done: the new image boots at the next reset (mqboard reset)\n");
    }
    return code;
}
