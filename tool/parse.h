// Parsers of what mqboard receives and reads: the board's caps, status, listing lines and
// df answers (untrusted: a board may be compromised, anyone may publish), board paths, and
// the lines of the config file. Pure functions over bytes, so that they can be fuzzed
// (tests/fuzz/fuzz_tool.c).
#ifndef TOOL_PARSE_H
#define TOOL_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// What a board running our agent says it can do (caps); proto 0 for an original board.
struct board_caps {
    int proto;
    size_t chunk;
    unsigned window;
};

// Fills caps from a caps reply, clamped to what the tool can use (chunk to [256, 64 KiB],
// window to [2, 1024]). Returns false (caps untouched) when the reply is not ours.
bool parse_caps(const uint8_t *data, size_t len, struct board_caps *caps);

// A decimal number that is exactly data[0, len) after prefix (1 to 19 digits, nothing else):
// a transfer's acknowledgement ("SEQ n") or a get's size. Never reads past len.
bool parse_number(const uint8_t *data, size_t len, const char *prefix, uint64_t *out);

// The board's retained status, as far as the tool relies on it.
struct board_status {
    int online;       // 1 online, 0 offline, -1 unknown
    double since;     // boot_time (UNIX seconds), 0 when absent or absurd
    char boot_id[40]; // "" when absent
    int slot;         // the running A/B slot, -1 when absent
    int pending;      // 1: the running image is not yet confirmed; 0 confirmed; -1 absent
    bool resetting;   // offline because it resets ("resetting": true): it comes back
    char key[96];     // the board's public key (base64 of the point), "" when absent
    bool signed_only; // it obeys signed commands only ("signed": true)
};
void parse_status(const uint8_t *data, size_t len, struct board_status *st);

// A signed status ends with ,"sig":"BASE64"} (docs/protocol.md): *body_len is where that
// member begins (the signed text is data[0..body_len) followed by "}"), sig_b64 its value.
// False when the status carries no well-formed signature member at its end.
bool parse_status_sig(const uint8_t *data, size_t len, size_t *body_len, char sig_b64[96]);

// One line of a listing program's output: [path, is_dir, size, sha]. Returns false for a
// malformed line. path is malloc'd on success.
struct rentry {
    char *path;
    bool dir;
    uint64_t size;
    char sha[65]; // lower-case hex SHA-256, or "" when not asked for
};
bool parse_entry(const char *line, struct rentry *e);

// The first five fields of statvfs, each a number in [0, 1e18). Returns false otherwise.
bool parse_statvfs(const char *line, double v[5]);

// Lexically normalizes a board path ("/lib/.." is "/", "a//b/." is "a/b"); malloc'd.
char *board_normalize(const char *path);
// True when a board path can travel in a topic (no '+', '#' or control characters).
bool topic_safe(const char *path);
// The part of a listed board path below the listed directory remote, or NULL when the
// (untrusted) entry is not under it or has an empty, "." or ".." component.
const char *remote_sub(const char *path, const char *remote);

// One config-file line, split in place: a comment or blank line (CONF_NONE), "[section]"
// (*key = the section name), "key = value" (both trimmed), or CONF_BAD.
enum conf_line { CONF_NONE, CONF_SECTION, CONF_SETTING, CONF_BAD };
enum conf_line parse_conf_line(char *line, char **key, char **value);

#endif
