// mqboard's shared declarations: exit codes, settings, the board session and the command
// table. Every command has one signature: int cmd_NAME(struct tool *, int argc, char **argv),
// returning an exit code.
#ifndef TOOL_TOOL_H
#define TOOL_TOOL_H

#include <mosquitto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mqb/auth.h"
#include "mqb/wire.h"
#include "parse.h"

// Exit codes (documented in README and `mqboard help`).
enum exit_code {
    EXIT_OK = 0,      // success
    EXIT_BOARD = 1,   // the board reported an error (printed on stderr)
    EXIT_USAGE = 2,   // bad command line
    EXIT_TIMEOUT = 3, // the board stayed silent for --timeout seconds
    EXIT_CONN = 4,    // cannot connect or authenticate to the broker, or the connection was lost
    EXIT_LOCAL = 5,   // a local file could not be read or written
    EXIT_TIMEOUT_RUN = 124, // --timeout-run interrupted the eval (as timeout(1))
    EXIT_INTERRUPTED = 130, // interrupted with Ctrl-C
};

// session_recv's answer when Ctrl-C was pressed or the run deadline passed.
#define RECV_INTERRUPT (-1)
// session_recv's answer when the board said it is busy and --nonblock is set.
#define RECV_BUSY (-2)
// session_recv's answer when the board reset (its status said so) and is back: what it ran
// ended with the reset.
#define RECV_RESET (-3)
// The lease an eval's requester asks for by default (renewed every third of it while it
// waits): the board interrupts an eval whose requester is gone after this many seconds.
#define LEASE_S 15
// A command that has not started on the board this many seconds after it was sent is refused
// there (its id carries the deadline): a board that comes back hours later never runs it.
#define EXPIRE_S 600
// Command ids: 8 random URL-safe characters, then ".<deadline, 8 hex digits>".
#define ID_LEN 24

// Boards at a time in a fan-out (pdsh's default), and at most.
#define FANOUT_DEFAULT 32
#define FANOUT_MAX 256
// A child's --json document kept by a fan-out at most (as fleet.c keeps 1 MiB of output).
#define FANOUT_JSON_MAX (1u << 20)

struct tool_opts {
    const char *board;  // -b profile name
    bool json;          // --json: one JSON document on stdout
    bool nonblock;      // --nonblock: fail at once when the board is busy with another command
    bool no_follow;     // --no-follow: start eval/exec/run and leave it running (detached)
    bool no_stdin;      // -n: the board's program reads end of file, never our stdin (ssh -n)
    double lease;       // --lease: seconds the board waits for a sign of life from us
    double expire;      // --expire: seconds a command may wait before it starts (0: forever)
    bool quiet;         // -q: no progress bar
    double timeout_run; // --timeout-run: interrupt an eval after this many seconds (0: never)
    double chunk;       // --chunk: largest data bytes per message (0: what the board allows)
    const char *server;
    int port;
    const char *prefix;
    const char *prefix_from;    // where the prefix came from: option, variable, file:line
    char prefix_overrides[300]; // the prefix it replaced, and from where ("" if none)
    double timeout;             // seconds of silence from the board before giving up
    int verbose;
    const char *username;
    const char *password;
    bool tls;
    const char *cafile;
    const char *psk_identity;
    const char *psk;
    const char *key; // the operator's private key (--key; default CONFIG/id_mqb)
    // Shortcuts from the config file (`alias.NAME = COMMAND ARGS...`), as mpremote's
    // config.py commands.
#define ALIASES_MAX 32
    const char *alias_name[ALIASES_MAX];
    const char *alias_value[ALIASES_MAX];
    int naliases;
    // The config file's [profiles] (boards --probe, group members).
#define PROFILES_MAX 256
    const char *profile_name[PROFILES_MAX];
    const char *profile_prefix[PROFILES_MAX];
    int nprofiles;
    // Many boards: a [group NAME] chosen with -b (its members, space-separated), --all, or a
    // --prefix with MQTT or shell wildcards; --parallel children at a time.
    const char *group_members;
    bool all;
    int parallel;
    // Rollouts over many boards: --canary boards first, then waves; stop once more than
    // --max-failures boards failed (ota then waits until each update is confirmed).
    int canary;
    int max_failures;
};

// A received reply message (payload copied, owned by the session until the next recv).
struct reply {
    bool is_err;
    struct mqb_hdr hdr; // reply/out only
    const uint8_t *data;
    size_t len;
};

struct msg_node;

// The operator's key, loaded when a board first wants a signed command (keys.c), or ahead of
// it on a thread of its own while the session connects (keys_prepare): OpenSSL's first use
// costs milliseconds that the network round trips can hide.
struct signer {
    void *key; // EVP_PKEY *
    pthread_t warm;
    bool warming;    // the thread owns key, error, board_key until keys_settle joins it
    bool tried;      // key was loaded (or failed to) already
    char path[4096]; // of key
    uint8_t board_pub[MQB_PUBKEY_LEN];
    void *board_key; // EVP_PKEY * of board_pub, made by the thread
    uint8_t id[MQB_KEYID_LEN];
    uint64_t counter; // of the last signed message (nanoseconds, strictly increasing)
    bool failed;      // the key could not be loaded (said once)
    char error[512];  // why it could not
};

// One board's key as its signed status shows it, checked against the key recorded for it
// (known_boards), and the hash of the current command's reply data since its last signed
// reply (keys.c).
struct board_trust {
    const char *prefix; // borrowed
    char status_topic[MQB_PREFIX_MAX + 16];
    bool key_ok;      // its status was signed by its recorded key
    bool signed_only; // ... and says it obeys signed commands only
    bool refused;     // the last status was not: ignored
    bool forged_said;
    uint8_t pub[MQB_PUBKEY_LEN];
    uint8_t boot[MQB_BOOTID_LEN];
    void *chain; // EVP_MD_CTX *
    bool chained;
    uint16_t chain_seq;
    void *pkey; // EVP_PKEY * of pub, parsed once
};

struct session {
    const struct tool_opts *o;
    FILE *err; // where the session's error messages go (the tool's err)
    struct mosquitto *mosq;
    bool mqtt311;      // the broker refused MQTT 5
    int connack;       // -1 until CONNACK
    int last_mid;      // of the last command message published (QoS 1)
    bool last_unacked; // ... and the broker has not acknowledged it yet
    bool lost;
    int subacked;
    int subacked_target; // SUBACKs awaited
    bool sub_refused;    // a SUBACK said failure
    double broker_rtt;   // seconds, measured by the first subscription
    char id[ID_LEN];
    char ping_id[ID_LEN];
    bool pong;            // the board answered the last ping
    double pong_at;       // when the board last said it is still on the command
    double lease_at;      // when to renew the eval's lease next (0: no lease)
    bool ping_on_silence; // a silent board is asked whether it is alive (long evals)
    // The board's retained status, as seen when connecting (untrusted: any client may
    // publish it): 1 online, 0 offline, -1 none.
    int online;
    double status_since; // boot_time of the status (0: unknown)
    char boot_id[40];
    int slot; // the status's running slot (-1: none), image pending (1), valid (0)
    int pending;
    bool present;        // the board answered or said it is online in this run
    bool probing;        // the presence probe runs: a status that changes ends it
    int probe_was;       // ... the status when it began
    bool went_offline;   // its status turned offline during the current command
    bool resetting;      // its status announced a reset (it comes back)
    char reset_from[40]; // the boot_id that reset ends
    void *busy;          // cJSON of the last busy notice (owned), for --json
    double interrupt_at; // monotonic time at which recv reports RECV_INTERRUPT (0: never)
    bool by_user;        // the last RECV_INTERRUPT was Ctrl-C or a signal, not interrupt_at
    bool ran_out;        // the eval's first interrupt was --timeout-run's
    char cmd[MQB_CMD_MAX + 1];
    char reply_topic[MQB_TOPIC_MAX];
    char status_topic[MQB_PREFIX_MAX + 16];
    bool busy_now; // a busy notice for the current command just arrived
    struct msg_node *head, *tail;
    struct msg_node *current; // the message returned by the last recv
    bool caps_known;
    struct board_caps caps;
    // mount: the directory served as the board's /remote (its realpath, malloc'd; NULL when
    // none), writable, the mount's id on the board, and when its lease is renewed next.
    char *mount_root;
    bool mount_unsafe; // mount -l: symlinks may lead out of the directory
    bool mount_rw;
    char mount_id[ID_LEN];
    double mount_lease_at;
    // The running eval asked for keyboard input (question stdin_n, at most stdin_len bytes,
    // for stdin_to); stdin_eof once our input has ended.
    bool user_code; // the eval that runs is the user's (eval/exec/run/repl), not a program
                    // of ours (ls, ...): it may read stdin (unless -n) and end with a reset
    bool stdin_want;
    unsigned long stdin_n;
    size_t stdin_len;
    char stdin_to[ID_LEN];
    bool stdin_eof;
    struct signer signer;     // the operator's key (keys.c)
    struct board_trust trust; // what the board's signed status says (keys.c)
};

// An in-memory stream that keeps at most cap bytes and counts what it dropped.
struct bounded {
    char *buf; // NUL-terminated (may hold NULs before len)
    size_t len, cap, dropped;
};
// What a --json document keeps of a command's output and of its errors, each.
#define JSON_OUT_MAX (8u << 20)

struct tool {
    struct tool_opts opts;
    struct session session;
    bool connected;
    const char *command;
    FILE *out;               // where command output goes: stdout, or a buffer for --json
    struct bounded out_json; // --json: what commands print, at most JSON_OUT_MAX bytes
    FILE *err;               // where error messages go: stderr, or a buffer for --json
    struct bounded err_json;
    void *result; // cJSON of a command's structured result, for --json (owned)
    double started;
};

#include <signal.h>
// Set by SIGINT; eval-like commands forward it to the board as an interrupt.
extern volatile sig_atomic_t tool_interrupted;
// Set (to the signal) by a second SIGINT, SIGTERM or SIGHUP: interrupt the board's eval, then
// leave.
extern volatile sig_atomic_t tool_leaving;

// Connects to the broker (once per tool run). Returns EXIT_OK or EXIT_CONN/EXIT_TIMEOUT
// after printing what went wrong.
int session_connect(struct tool *t);
void session_close(struct session *s);

// One connection for many boards (fleet.c): subscribed to each prefix's status and replies.
int session_connect_many(struct tool *t, const char *const *prefixes, int n);
// Runs the network until a message arrives, a signal, or timeout_s. EXIT_OK or EXIT_CONN.
int session_pump(struct session *s, double timeout_s);
// A fresh command id (with the --expire deadline).
void session_new_id(const struct session *s, char *id, size_t cap);

// Starts a command: a fresh id, subscribed to its replies. tail may be NULL.
int session_begin(struct session *s, const char *cmd);
// Publishes one message at QoS 1 (with MQTT 5, expiring after --expire). A mosquitto rc.
int session_publish(struct session *s, const char *topic, const void *payload, size_t len);
// The same, signed for bt's board when it wants signed commands (fleets: many boards).
int session_publish_to(struct session *s, const struct board_trust *bt, const char *topic,
                       const void *payload, size_t len);
// Publishes one command message (2-byte header + data) for the current command.
int session_send(struct session *s, const char *tail, uint16_t seq, bool last, const uint8_t *data,
                 size_t len);
// Publishes a message for another command of the current id (e.g. "ack").
int session_send_cmd(struct session *s, const char *cmd, const char *tail, const uint8_t *data,
                     size_t len);
// Publishes a one-message command under a fresh id whose replies are ignored (interrupt).
int session_send_aside(struct session *s, const char *cmd, const char *tail);
// Waits for the next reply of the current command; timeout_s < 0 uses the session's silence
// timeout, 0 only polls. Returns EXIT_OK with *r set, EXIT_TIMEOUT (message printed unless
// polling), EXIT_CONN, or RECV_INTERRUPT (Ctrl-C, or interrupt_at reached).
int session_recv(struct session *s, double timeout_s, struct reply *r);
// Sends what is queued for the broker (before mqboard leaves), for at most 200 ms.
void session_flush(struct session *s);
// Ends the current command (its late replies are dropped).
void session_end(struct session *s);

// Takes the next message that has arrived, of any topic (without waiting). Returns false
// when none is queued; the message stays valid until the next take or recv.
bool session_take_any(struct session *s, const char **topic, struct reply *r);
// Subscribes to another topic of the board (log, status).
// The same at QoS 0: retained messages by the hundred thousand are not held back by the
// broker's queue of unacknowledged messages (mosquitto keeps 1000 by default, then drops).
int session_subscribe_qos(struct session *s, const char *topic, int qos);
int session_subscribe(struct session *s, const char *topic);
// Waits for the next message on topic (timeout_s < 0: forever). Returns EXIT_OK with *r set
// (data = payload), EXIT_TIMEOUT, EXIT_CONN or RECV_INTERRUPT.
int session_recv_raw(struct session *s, const char *topic, double timeout_s, struct reply *r);

// Waits up to timeout_s while no command runs (the repl's prompt), answering the board's
// questions to the mount and renewing its lease. Returns false when the connection is gone.
bool session_idle(struct session *s, double timeout_s);
// Publishes a one-message command under the id given (e.g. the mount's).
int session_send_as(struct session *s, const char *cmd, const char *id, const char *tail,
                    const uint8_t *data, size_t len);

// ask.c: answers to the board's questions (reply/ask/<id>): keyboard input for the running
// eval and the mounted directory's files.
void ask_serve(struct session *s, const char *to, const uint8_t *payload, size_t len);
// Standard input is readable while the running eval waits for keyboard input.
void ask_stdin_ready(struct session *s);

// A monotonic clock in seconds (session.c).
double tool_now(void);

// settings.c: a number within [lo, hi] (said when not); a copy of a value that lives as long
// as the process; a setting applied by name (config keys and variables share the names); the
// config file (top: its top-level settings; section_too: the [board] profile's) and the
// MQBOARD_* variables. false when a setting is refused (said).
bool settings_number(const char *what, const char *s, double lo, double hi, double *out);
const char *settings_keep(const char *value);
bool settings_set(struct tool_opts *o, const char *key, const char *value, const char *from);
bool settings_load_config(struct tool_opts *o, const char *board, bool top, bool section_too);
bool settings_load_env(struct tool_opts *o);

// presence.c. Says whether a board is there before a command waits for it: online status, or
// (no status: an original board?) an answer to caps within a second. Returns EXIT_OK, or
// EXIT_TIMEOUT with "board offline since ..." / "no board answers at PREFIX".
int session_present(struct session *s);
// Renews the lease of the current eval now and then (while waiting for it).
void session_lease(struct session *s, bool on);
// Waits up to timeout_s until done(s, ctx) holds for the board's status (checked whenever
// one arrives). Returns EXIT_OK, EXIT_TIMEOUT, EXIT_CONN or RECV_INTERRUPT.
int session_watch(struct session *s, double timeout_s,
                  bool (*done)(const struct session *, const void *), const void *ctx);
// Asks caps again and again (PROBE_S each) until the board answers, at most total_s: a board
// that has just booted answers through every node of a clustered broker only once its
// subscription has spread. Returns EXIT_OK or EXIT_TIMEOUT (or EXIT_CONN).
int session_answers(struct session *s, double total_s);
// Reads the retained status again (after a reset): waits up to timeout_s for one whose
// boot_id differs from old_boot_id and that says online. Returns EXIT_OK or EXIT_TIMEOUT.
// The board announced a reset: waits (-T) until it is back (a new boot that answers).
// EXIT_OK, or EXIT_TIMEOUT (said), EXIT_CONN, RECV_INTERRUPT.
int session_reset_wait(struct session *s);
int session_wait_boot(struct session *s, const char *old_boot_id, double timeout_s);

// Asks the board what it can do (once, cached). Returns EXIT_OK (caps->proto 0 for a board
// running the original code), or an error exit code.
int session_caps(struct session *s, struct board_caps *caps);

// Prints a board error reply on t->err and returns EXIT_BOARD.
int report_board_error(struct tool *t, const struct reply *r);

// s with control characters (terminal escapes) shown as \n, \x1b, ...: text from a board is
// never printed raw. malloc'd.
// keys.c: signed commands and replies (docs/security.md).
void keys_trust_init(struct board_trust *bt, const char *prefix);
// Takes a status (the retained one, or a new one): false when it must be ignored (not signed
// by the key recorded for this board, or a key changed); records a new board's key.
bool keys_take_status(struct board_trust *bt, FILE *err, const uint8_t *p, size_t len,
                      const struct board_status *st);
// Signs a command message to bt's board when it wants it: *out (malloc'd) replaces payload.
// 1 signed, 0 nothing to sign, -1 cannot (said on err).
int keys_sign(struct signer *sg, const struct tool_opts *o, FILE *err, const struct board_trust *bt,
              const char *topic, const uint8_t *payload, size_t len, uint8_t **out, size_t *olen);
// Checks a reply to command cmd (current: one of its reply/out messages, in order, which go
// into the chain): false when it must be dropped; a signed reply loses its trailer (*len).
bool keys_check_reply(struct board_trust *bt, FILE *err, const char *cmd, const char *topic,
                      const struct mqb_topic *t, const uint8_t *p, size_t *len, bool current);
void keys_begin(struct board_trust *bt);
// True when known_boards records a key for bt's board (its commands will need signing).
bool keys_expected(const struct board_trust *bt);
void keys_free(struct signer *sg, struct board_trust *bt);
// Starts loading the operator's key on a thread when bt's board has a key recorded here (its
// commands will be signed), so that OpenSSL's set-up overlaps the connection's round trips;
// keys_settle joins it (every use of sg or of bt's key does).
void keys_prepare(struct signer *sg, const struct tool_opts *o, const struct board_trust *bt);
void keys_settle(struct signer *sg, struct board_trust *bt);
// What the board's status says about its keys, in words (for status).
void keys_describe(const struct board_trust *bt, char *out, size_t cap);
// The ota topic's tail for image: its hash, and its release signature (IMAGE.sig, made by
// `mqboard key sign`) when there is one; EXIT_OK or EXIT_LOCAL (said).
int keys_image_tail(const char *image, const char *sha_hex, bool downgrade, char *out, size_t cap);
int cmd_key(struct tool *t, int argc, char **argv);
int cmd_trust(struct tool *t, int argc, char **argv);

// A JSON string literal (quoted) of len bytes: control characters and NUL escaped, bytes
// that are not UTF-8 replaced by U+FFFD, so strict parsers take the document (malloc'd).
char *tool_json_string(const char *s, size_t len);
// Replaces bytes that are not UTF-8 in every string and key of j (text from boards) by
// U+FFFD.
struct cJSON;
void tool_json_clean(struct cJSON *j);
FILE *tool_bounded_stream(struct bounded *b, size_t cap);
char *tool_escape(const char *s);
// One line of a board's output in a fan-out: "PREFIX: line\n", both escaped as above (the
// prefix may come from a board's status topic, the line may hold any byte, NUL included).
void tool_prefixed_line(FILE *to, const char *prefix, const char *line, size_t len);

// Prints "mqboard: <message>" on t->err (stderr, or the --json document's error).
void tool_error(struct tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The source that eval, exec or run (argv[0]) sends: malloc'd, *len bytes; NULL with *code
// set (and the error said) on a usage or read error.
char *eval_source(struct tool *t, int argc, char **argv, size_t *len, int *code);

// Runs an eval and writes its output to out. Returns an exit code.
int run_eval(struct tool *t, const char *src, size_t len, FILE *out);

// Runs a program on the board and returns its whole output (malloc'd, NUL-terminated) in
// *out. Board errors are reported; returns an exit code.
int run_capture(struct tool *t, const char *src, char **out);

// A Python string literal for s (JSON string syntax, which Python accepts): quotes,
// backslashes and control characters cannot break out of it. malloc'd.
char *py_str(const char *s);

// Formats a byte count as "1.5M" style into buf.
const char *human_size(double bytes, char *buf, size_t cap);

// Progress on stderr for long transfers (only on a terminal, and not with -q).
struct progress {
    bool on;
    const char *label;
    uint64_t total, done;
    double start, last_draw;
};
void progress_begin(struct tool *t, struct progress *p, const char *label, uint64_t total);
void progress_update(struct progress *p, uint64_t done);
void progress_end(struct progress *p);

// SHA-256 of the rest of an open file, in lower-case hex; rewinds it. EXIT_LOCAL on a read
// error.
int file_sha256(FILE *f, char out[65]);

// File transfers, used by put/get and by sync.
int put_file(struct tool *t, const char *local, const char *remote);
int get_file(struct tool *t, const char *remote, const char *local);

int cmd_eval(struct tool *t, int argc, char **argv);
int cmd_exec(struct tool *t, int argc, char **argv);
int cmd_run(struct tool *t, int argc, char **argv);
int cmd_put(struct tool *t, int argc, char **argv);
int cmd_get(struct tool *t, int argc, char **argv);
int cmd_cat(struct tool *t, int argc, char **argv);
int cmd_ls(struct tool *t, int argc, char **argv);
int cmd_tree(struct tool *t, int argc, char **argv);
int cmd_rm(struct tool *t, int argc, char **argv);
int cmd_mkdir(struct tool *t, int argc, char **argv);
int cmd_rmdir(struct tool *t, int argc, char **argv);
int cmd_mv(struct tool *t, int argc, char **argv);
int cmd_sha256sum(struct tool *t, int argc, char **argv);
int cmd_df(struct tool *t, int argc, char **argv);
int cmd_sync(struct tool *t, int argc, char **argv);
int cmd_ota(struct tool *t, int argc, char **argv);
int cmd_reset(struct tool *t, int argc, char **argv);
int cmd_view(struct tool *t, int argc, char **argv);
int cmd_status(struct tool *t, int argc, char **argv);
int cmd_ping(struct tool *t, int argc, char **argv);
int cmd_repl(struct tool *t, int argc, char **argv);
int cmd_cp(struct tool *t, int argc, char **argv);
int cmd_touch(struct tool *t, int argc, char **argv);
int cmd_edit(struct tool *t, int argc, char **argv);
int cmd_mip(struct tool *t, int argc, char **argv);
int cmd_boards(struct tool *t, int argc, char **argv);
// Every board with a status that matches pattern (NULL: all), as a cJSON object keyed by
// prefix; NULL (with *code) when the broker could not be reached.
void *boards_find(struct tool *t, const char *pattern, bool probe, int *code);
// Runs body once per target (a child process each, --parallel at a time) with
// t->opts.prefix set; prints their output behind "PREFIX: " and a summary.
int fanout(struct tool *t, const char *const *targets, int n, int (*body)(struct tool *, void *),
           void *ctx);
// Prints the many-board summary (n ok, n failed, n offline) and makes it, with results (a
// cJSON object of per-board results, taken), the --json result.
void fanout_summary(struct tool *t, int ok, int failed, int offline, int n, void *results);
// A rollout: the first --canary targets, then waves of --parallel, each through fanout;
// stops (the rest untouched) once more than --max-failures boards failed.
int rollout(struct tool *t, const char *const *targets, int n, int (*body)(struct tool *, void *),
            void *ctx);
// eval, exec and run on many boards over one connection (fleet.c). Returns -1 when the
// command line is not one of those (the caller uses fanout), else the exit code.
int fleet_eval(struct tool *t, const char *const *targets, int n, int argc, char **argv);
int cmd_rtc(struct tool *t, int argc, char **argv);
int cmd_mount(struct tool *t, int argc, char **argv);

#endif
