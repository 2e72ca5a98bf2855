// mqrepld's shared state: its settings and the pieces the event loop ties together.
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#define MQREPLD_VERSION "0.1.0"

struct agent_config {
    const char *server;
    int port;
    const char *prefix;
    const char *root;
    const char *client_id;
    const char *username;
    const char *password;
    const char *cafile;
    const char *psk_identity;
    const char *psk;
    int keepalive;
    int verbose;
};

// Runs the agent until SIGTERM/SIGINT. Returns the process exit status.
int agent_run(const struct agent_config *cfg);

// Monotonic milliseconds.
uint64_t agent_now_ms(void);

#endif
