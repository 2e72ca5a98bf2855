// mqrepld's shared state: its settings and the pieces the event loop ties together.
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <mosquitto.h>
#include <openssl/evp.h>

#include "fs.h"
#include "mqb/boot.h"
#include "mqb/engine.h"
#include "mqb/wdt.h"
#include "pyeval.h"
#include "trust.h"

#define MQREPLD_VERSION "0.1.0"

// The version this binary reports, and "mqrepld VERSION". Both come from one tag in writable
// data ("MQREPLD-VERSION=0.1.0"), never merged with other strings, so that a build can be
// re-stamped (the OTA tests make a "newer build" that way).
const char *agent_version(void);
const char *agent_name(void);

// Exit status by which a supervised agent asks its launcher for a reset.
#define EXIT_RESET 77
#define EXIT_WATCHDOG 78
#define EXIT_RESET_SOFT 79

// Values of machine.reset_cause(), as on MicroPython.
enum reset_cause {
    CAUSE_PWRON = 1,
    CAUSE_HARD = 2,
    CAUSE_WDT = 3,
    CAUSE_SOFT = 5,
    CAUSE_RESTART = 6, // the agent was restarted (RTC memory survived): not a MicroPython value
};

struct agent_config {
    const char *server;
    int port;
    const char *prefix;
    const char *root;
    const char *client_id;
    const char *username;
    const char *password;
    const char *password_file;
    const char *cafile;
    const char *psk_identity;
    const char *psk;
    const char *psk_file;
    int keepalive;
    int verbose;
    const char *rtc_file;    // emulated RTC memory
    bool plain_repl;         // serve PREFIX/repl/in
    double log_rate;         // log lines per second sent to PREFIX/log
    double wdt_timeout;      // seconds; 0 disables the watchdog
    double allok;            // seconds of continuous feeding that earn normal mode
    const char *slots;       // A/B slot directory (run as launcher)
    const char *hw_watchdog; // a Linux watchdog device to pet while fed
    bool syslog;             // also log to syslog
    bool original;           // answer as the original mqrepl.py does (no extensions, status)
    const char *keys;        // the board's key and the operators' keys it obeys (trust.c)
};

// A/B firmware slots (slots.c).
struct slots {
    char dir[4096];
    int running;              // the slot this agent runs from, -1 without slots
    struct mqb_boot_state st; // the boot-state record as last read or written
    int newer;                // which copy of the record holds st
    char tmp[4300];           // the image being received (ota)
};

struct agent {
    const struct agent_config *cfg;
    struct mosquitto *mosq;
    struct mqb_engine engine;
    struct board_fs fs;
    struct pyeval *pe;
    struct ask ask;     // questions of the board's Python to its host, and the mount
    struct trust trust; // the board's key, the keys it obeys (empty dir: none)
    EVP_MD_CTX *hash[MQB_HASH_SLOTS];
    struct eval_input *inputs; // multi-message eval input being collected
    int outstanding;           // QoS 1 publishes not yet acknowledged by the broker
    bool connected;
    bool mqtt311; // the broker refused MQTT 5: connect with 3.1.1
    int wake[2];  // evaluator -> loop
    // The reply stream of the eval whose output is being sent.
    char out_id[MQB_ID_MAX + 1];
    uint32_t out_seq;
    uint64_t out_due_ms;
    // Boot and watchdog.
    enum mqb_boot_mode mode;
    int reset_cause;
    long boot_time;
    bool wdt_on;
    struct mqb_wdt wdt;
    int heartbeat_fd;                 // the launcher's watchdog pipe, -1 when not supervised
    int start_dir;                    // where mqrepld started: a reset re-executes it there
    int hw_wdt_fd;                    // --hw-watchdog device, -1 when none
    char reset_mode;                  // pending reset: 'n', 'f', 's', 'h'; 0 none
    uint64_t reset_at;                // when the pending reset happens at the latest
    char reset_after[MQB_ID_MAX + 1]; // the eval that asked for it: its reply leaves first
    char boot_id[17];                 // random per boot, in the status: tells boots apart
    char feed_topic[MQB_TOPIC_MAX];   // the watchdog's loop-back topic (a per-boot random id)
    struct slots slots;
    // Log rate limiting (token bucket).
    double log_tokens;
    uint64_t log_refill_ms;
    unsigned log_dropped;
    unsigned plain_seq;
    uint64_t discover_ms;   // when the last discovery question came
    double discover_tokens; // answers it may still give now (loop.c)
};

// main.c / loop.c
int agent_run(const struct agent_config *cfg, char **argv);
uint64_t agent_now_ms(void);
void agent_log(struct agent *a, char level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void agent_request_reset(struct agent *a, char mode, bool via_broker, const char *after_id);

// platform.c: the engine's hooks.
extern const struct mqb_platform agent_platform;
void agent_inputs_free(struct agent *a);

// mqtt.c
int mqtt_setup(struct agent *a);
int mqtt_connect(struct agent *a);
int mqtt_publish(struct agent *a, const char *topic, const void *payload, size_t len, int qos,
                 bool retain);
void mqtt_publish_status(struct agent *a, bool online);
// The status, retained or not (an answer to a discovery question: docs/protocol.md).
void mqtt_send_status(struct agent *a, bool online, bool retain);

// slots.c: A/B slots, the boot-state record, RTC memory and the launcher.
int slots_open(struct slots *s, const char *dir, int running);
// Opens the inactive slot's temporary image. -2 while the running image is still pending.
int slots_ota_open(struct slots *s, int *fd);
int slots_ota_close(struct slots *s, int fd, bool commit);
bool slots_mark_valid(struct slots *s);
int launcher_run(const struct agent_config *cfg, char **argv);
#define RTC_MEMORY_MAX 2048
int rtc_read(const char *path, uint8_t *buf, size_t cap);
// Sets the safe-mode word (the first 4 bytes) to the magic (normal) or to "not the magic".
int rtc_mark(const char *path, bool normal);
int rtc_write(const char *path, const uint8_t *buf, size_t len);

#endif
