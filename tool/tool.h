// mqboard's shared declarations: exit codes, settings, the board session and the command
// table. Every command has one signature: int cmd_NAME(struct tool *, int argc, char **argv),
// returning an exit code.
#ifndef TOOL_TOOL_H
#define TOOL_TOOL_H

#include <mosquitto.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mqb/wire.h"

// Exit codes (documented in README and `mqboard help`).
enum exit_code {
    EXIT_OK = 0,      // success
    EXIT_BOARD = 1,   // the board reported an error (printed on stderr)
    EXIT_USAGE = 2,   // bad command line
    EXIT_TIMEOUT = 3, // the board stayed silent for --timeout seconds
    EXIT_CONN = 4,    // cannot connect or authenticate to the broker, or the connection was lost
    EXIT_LOCAL = 5,   // a local file could not be read or written
};

struct tool_opts {
    const char *server;
    int port;
    const char *prefix;
    double timeout; // seconds of silence from the board before giving up
    int verbose;
    const char *username;
    const char *password;
    bool tls;
    const char *cafile;
    const char *psk_identity;
    const char *psk;
};

// A received reply message (payload copied, owned by the session until the next recv).
struct reply {
    bool is_err;
    struct mqb_hdr hdr; // reply/out only
    const uint8_t *data;
    size_t len;
};

struct msg_node;

// What a board running our agent says it can do (caps); proto 0 for an original board.
struct board_caps {
    int proto;
    size_t chunk;
    unsigned window;
};

struct session {
    const struct tool_opts *o;
    struct mosquitto *mosq;
    int connack; // -1 until CONNACK
    bool lost;
    int subacked;
    char id[16];
    char cmd[MQB_CMD_MAX + 1];
    char reply_topic[MQB_TOPIC_MAX];
    struct msg_node *head, *tail;
    struct msg_node *current; // the message returned by the last recv
    bool caps_known;
    struct board_caps caps;
};

struct tool {
    struct tool_opts opts;
    struct session session;
    bool connected;
};

// Connects to the broker (once per tool run). Returns EXIT_OK or EXIT_CONN/EXIT_TIMEOUT
// after printing what went wrong.
int session_connect(struct tool *t);
void session_close(struct session *s);

// Starts a command: a fresh id, subscribed to its replies. tail may be NULL.
int session_begin(struct session *s, const char *cmd);
// Publishes one command message (2-byte header + data) for the current command.
int session_send(struct session *s, const char *tail, uint16_t seq, bool last, const uint8_t *data,
                 size_t len);
// Publishes a message for another command of the current id (e.g. "ack").
int session_send_cmd(struct session *s, const char *cmd, const char *tail, const uint8_t *data,
                     size_t len);
// Waits for the next reply of the current command; timeout_s < 0 uses the session's silence
// timeout, 0 only polls. Returns EXIT_OK with *r set, EXIT_TIMEOUT (message printed unless
// polling), or EXIT_CONN.
int session_recv(struct session *s, double timeout_s, struct reply *r);
// Unsubscribes from the current command's replies.
void session_end(struct session *s);

// Asks the board what it can do (once, cached). Returns EXIT_OK (caps->proto 0 for a board
// running the original code), or an error exit code.
int session_caps(struct session *s, struct board_caps *caps);

// Prints a board error reply on stderr and returns EXIT_BOARD.
int report_board_error(const struct reply *r);

// Runs an eval and writes its output to out. Returns an exit code.
int run_eval(struct tool *t, const char *src, size_t len, FILE *out);

int cmd_eval(struct tool *t, int argc, char **argv);
int cmd_put(struct tool *t, int argc, char **argv);
int cmd_get(struct tool *t, int argc, char **argv);

#endif
