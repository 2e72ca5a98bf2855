// mqrepld's libmosquitto glue: client set-up (TLS, PSK, MQTT 5 maximum packet size, the
// retained status and its last will), connecting, callbacks into the loop, publishing.
#define _GNU_SOURCE
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "../../sigkey/sigkey.h"
#include "agent.h"

// The broker does not deliver bigger packets to the agent (MQTT 5): a flood of huge
// messages cannot make the agent's memory grow. Up to this size a message that is too big
// for the engine still reaches it and gets an error reply.
#define MAX_PACKET (256 * 1024)

void agent_on_message(struct agent *a, const struct mosquitto_message *m);

static void status_topic(struct agent *a, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/mqb/status", a->cfg->prefix);
}

static char *status_json(struct agent *a, bool online) {
    static const char *causes[] = {"",          "power-on", "hard",   "watchdog",
                                   "deepsleep", "soft",     "restart"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", online ? "online" : "offline");
    cJSON_AddStringToObject(j, "agent", agent_name());
    cJSON_AddStringToObject(j, "mode", a->mode == MQB_BOOT_SAFE ? "safe" : "normal");
    cJSON_AddNumberToObject(j, "boot_time", (double)a->boot_time);
    cJSON_AddStringToObject(j, "boot_id", a->boot_id);
    cJSON_AddStringToObject(
        j, "reset_cause",
        a->reset_cause > 0 && a->reset_cause <= CAUSE_RESTART ? causes[a->reset_cause] : "unknown");
    if (a->reset_mode != 0) {
        cJSON_AddBoolToObject(j, "resetting", true); // it comes back: waiting hosts wait on
    }
    if (a->slots.running >= 0) {
        cJSON_AddNumberToObject(j, "slot", a->slots.running);
        bool pending = !mqb_ota_may_write(&a->slots.st, (uint8_t)a->slots.running);
        cJSON_AddStringToObject(j, "image", pending ? "pending" : "valid");
    }
    if (a->trust.board != NULL) { // its key, and whether it obeys signed commands only
        char b64[4 * ((MQB_PUBKEY_LEN + 2) / 3) + 1], topic[MQB_PREFIX_MAX + 16];
        sigkey_b64(a->trust.pub, MQB_PUBKEY_LEN, b64);
        cJSON_AddStringToObject(j, "key", b64);
        cJSON_AddBoolToObject(j, "signed", a->trust.auth.nkeys > 0);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        status_topic(a, topic, sizeof(topic));
        char *signed_s = trust_sign_status(&a->trust, topic, s);
        free(s);
        return signed_s;
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

void mqtt_publish_status(struct agent *a, bool online) {
    mqtt_send_status(a, online, true);
}

void mqtt_send_status(struct agent *a, bool online, bool retain) {
    if (a->cfg->original) {
        return; // the original board publishes no status
    }
    char topic[MQB_PREFIX_MAX + 16];
    status_topic(a, topic, sizeof(topic));
    char *s = status_json(a, online);
    mqtt_publish(a, topic, s, strlen(s), 1, retain);
    free(s);
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
    struct agent *a = obj;
    // A broker that does not speak MQTT 5 (aedes, RabbitMQ) refuses its CONNECT with a 3.1.1
    // code: the agent connects again with MQTT 3.1.1 (no maximum-packet-size property: the
    // 64 KiB data limit per message still holds, checked by the engine).
    if (rc != 0 && !a->mqtt311 && (rc == 1 || rc == 132 || rc == 130)) {
        agent_log(a, 'W', "the broker does not speak MQTT 5 (%d): using MQTT 3.1.1", rc);
        a->mqtt311 = true;
        mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        return;
    }
    if (rc != 0) {
        agent_log(a, 'E', "broker refused the connection: %s (%d)", mosquitto_connack_string(rc),
                  rc);
        return;
    }
    char topic[MQB_PREFIX_MAX + 16];
    snprintf(topic, sizeof(topic), "%s/mqb/cmd/#", a->cfg->prefix);
    mosquitto_subscribe(mosq, NULL, topic, 1);
    if (!a->cfg->original) {
        mosquitto_subscribe(mosq, NULL, MQB_DISCOVER_TOPIC, 0); // boards: who is there?
    }
    if (a->cfg->plain_repl && a->trust.auth.nkeys == 0) { // unsigned: not with keys
        snprintf(topic, sizeof(topic), "%s/repl/in", a->cfg->prefix);
        mosquitto_subscribe(mosq, NULL, topic, 1);
    }
    a->connected = true;
    a->outstanding = 0;
    mqb_wdt_link_up(&a->wdt);
    mqtt_publish_status(a, true);
    agent_log(a, 'I', "connected to %s:%d as board %s (%s mode)", a->cfg->server, a->cfg->port,
              a->cfg->prefix, a->mode == MQB_BOOT_SAFE ? "safe" : "normal");
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    struct agent *a = obj;
    a->connected = false;
    if (rc != 0) {
        agent_log(a, 'W', "connection to the broker lost");
    }
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
    (void)mosq;
    (void)mid;
    struct agent *a = obj;
    if (a->outstanding > 0) {
        a->outstanding--;
    }
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m) {
    (void)mosq;
    agent_on_message(obj, m);
}

int mqtt_setup(struct agent *a) {
    const struct agent_config *cfg = a->cfg;
    a->mosq = mosquitto_new(cfg->client_id, true, a);
    if (a->mosq == NULL) {
        fprintf(stderr, "mqrepld: cannot create the MQTT client\n");
        return -1;
    }
    mosquitto_int_option(a->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(a->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(a->mosq, on_connect);
    mosquitto_disconnect_callback_set(a->mosq, on_disconnect);
    mosquitto_publish_callback_set(a->mosq, on_publish);
    mosquitto_message_callback_set(a->mosq, on_message);
    if (cfg->username != NULL) {
        mosquitto_username_pw_set(a->mosq, cfg->username, cfg->password);
    }
    int rc = MOSQ_ERR_SUCCESS;
    if (cfg->psk != NULL) {
        rc = mosquitto_tls_psk_set(a->mosq, cfg->psk, cfg->psk_identity, NULL);
    } else if (cfg->cafile != NULL) {
        rc = mosquitto_tls_set(a->mosq, cfg->cafile, NULL, NULL, NULL, NULL);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqrepld: TLS set-up failed: %s\n", mosquitto_strerror(rc));
        return -1;
    }
    // The last will says "offline" (retained) when the agent dies or loses the broker.
    char topic[MQB_PREFIX_MAX + 16];
    status_topic(a, topic, sizeof(topic));
    char *will = status_json(a, false);
    if (!cfg->original) {
        mosquitto_will_set(a->mosq, topic, (int)strlen(will), will, 1, true);
    }
    free(will);
    return 0;
}

int mqtt_connect(struct agent *a) {
    if (a->mqtt311) {
        return mosquitto_connect_bind(a->mosq, a->cfg->server, a->cfg->port, a->cfg->keepalive,
                                      NULL);
    }
    mosquitto_property *props = NULL;
    mosquitto_property_add_int32(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE, MAX_PACKET);
    int rc = mosquitto_connect_bind_v5(a->mosq, a->cfg->server, a->cfg->port, a->cfg->keepalive,
                                       NULL, props);
    mosquitto_property_free_all(&props);
    return rc;
}

int mqtt_publish(struct agent *a, const char *topic, const void *payload, size_t len, int qos,
                 bool retain) {
    int rc = mosquitto_publish(a->mosq, NULL, topic, (int)len, payload, qos, retain);
    if (rc == MOSQ_ERR_SUCCESS && qos > 0) {
        a->outstanding++;
    }
    return rc;
}
