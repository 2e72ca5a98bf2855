// What the session (session.c) takes from the connection (connection.c): the queue of messages
// received, and the network loop.
#ifndef MQB_TOOL_CONNECTION_H
#define MQB_TOOL_CONNECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct session;

// A message received, queued in arrival order (session->head/tail); owned by the queue until
// taken, then by its taker (conn_node_free).
struct msg_node {
    char *topic;
    uint8_t *payload;
    size_t len;
    struct msg_node *next;
};

void conn_node_free(struct msg_node *n);

// Runs the network for at most timeout_s seconds or until done(s) holds. Returns false when
// the connection is gone.
bool conn_pump(struct session *s, double timeout_s, bool (*done)(struct session *));

// Every subscription asked for was acknowledged.
bool conn_got_suback(struct session *s);

#endif
