// The MQRepl wire format: the 2-byte message header, topic building and parsing, and the
// receiver's sequence rules. Pure functions over caller-owned buffers; nothing is kept.
#ifndef MQB_WIRE_H
#define MQB_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqb/config.h"
#include "mqb/err.h"

// The question every board answers with its status, not retained (boards discovery).
#define MQB_DISCOVER_TOPIC "mqb/discover"

#define MQB_HDR_LEN 2
#define MQB_HDR_LAST 0x8000u
#define MQB_SEQ_MASK 0x7FFFu
// Header of a reply that is a single message: last flag and seq 0x7FFF.
#define MQB_HDR_SINGLE 0xFFFFu

struct mqb_hdr {
    uint16_t seq; // 0..0x7FFF
    bool last;
};

// Writes the header for (seq & 0x7FFF, last) into out[0..1].
void mqb_hdr_encode(uint8_t out[MQB_HDR_LEN], uint16_t seq, bool last);

// Reads the header at the start of payload. Returns MQB_ERR_MALFORMED when len < 2.
enum mqb_err mqb_hdr_decode(const uint8_t *payload, size_t len, struct mqb_hdr *out);

// True for the single-reply header 0xFFFF.
bool mqb_hdr_is_single(const struct mqb_hdr *h);

enum mqb_topic_kind {
    MQB_TOPIC_CMD,         // PREFIX/mqb/cmd/<cmd>/<id>[/<tail>]
    MQB_TOPIC_REPLY_OUT,   // PREFIX/mqb/reply/out/<id>
    MQB_TOPIC_REPLY_ERR,   // PREFIX/mqb/reply/err/<id>
    MQB_TOPIC_REPLY_BUSY,  // PREFIX/mqb/reply/busy/<id> (extension: the command waits)
    MQB_TOPIC_REPLY_ASK,   // PREFIX/mqb/reply/ask/<id> (extension: the board asks the host)
    MQB_TOPIC_REPLY_RESET, // PREFIX/mqb/reply/reset/<id> (extension: that eval asked for a reset)
};

// A parsed topic: slices that point into the parsed string (borrowed, not NUL-terminated).
struct mqb_slice {
    const char *ptr;
    size_t len;
};

struct mqb_topic {
    enum mqb_topic_kind kind;
    struct mqb_slice cmd;  // empty for replies
    struct mqb_slice id;   // never empty
    struct mqb_slice tail; // empty when absent; may contain '/'
};

// Parses topic (len bytes, no NUL needed) under prefix. Returns MQB_ERR_MALFORMED when the
// topic is not under PREFIX/mqb/, or the command or id is missing or over its limit
// (MQB_CMD_MAX, MQB_ID_MAX); MQB_ERR_TOOBIG when only the tail is over MQB_PATH_MAX (then
// kind, cmd and id are set, and tail is cut to MQB_PATH_MAX).
enum mqb_err mqb_topic_parse(const char *prefix, const char *topic, size_t len,
                             struct mqb_topic *out);

// Builds "PREFIX/mqb/cmd/<cmd>/<id>" plus "/<tail>" when tail is not NULL, NUL-terminated,
// into buf. Returns MQB_ERR_NOSPACE when it does not fit in cap bytes.
enum mqb_err mqb_topic_cmd(char *buf, size_t cap, const char *prefix, const char *cmd,
                           const char *id, const char *tail);

// Builds "PREFIX/mqb/reply/out/<id>" (or err when is_err) into buf. MQB_ERR_NOSPACE as above.
enum mqb_err mqb_topic_reply(char *buf, size_t cap, const char *prefix, bool is_err,
                             const char *id);

// The deadline a host may put in a command id (extension): "<token>.<8 hex digits>", the
// latest time (Unix seconds) the command may start. Returns it, or 0 when id has none.
uint32_t mqb_id_deadline(const char *id);

// The receiver's sequence state of one stream.
struct mqb_seq {
    uint16_t next; // next expected seq
    bool done;     // the last message was accepted
};

void mqb_seq_init(struct mqb_seq *s);

// Applies the sequence rules to an incoming header: MQB_OK to accept (and advance),
// MQB_ERR_DUP to drop silently (a QoS 1 redelivery of an accepted message, or anything after
// the last), MQB_ERR_GAP when a message was skipped (the stream has failed).
// Sequence numbers wrap modulo 2^15, so streams of any length work.
enum mqb_err mqb_seq_check(struct mqb_seq *s, const struct mqb_hdr *h);

#endif
