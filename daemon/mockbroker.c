/* mockbroker.c - librdkafka's mock cluster behind a tiny API (mockbroker.h).
 *
 * A mock cluster needs an rd_kafka_t to live in: we create a producer handle
 * with no bootstrap servers (it never talks to anything) and hang the cluster
 * off it. Teardown order matters: the cluster must be destroyed before its
 * handle, or librdkafka aborts on an assertion. Everything that includes
 * rdkafka_mock.h is in this file (the API is experimental, no ABI promise).
 */
#include "../model/errmsg.h"
#include "mockbroker.h"
#include <librdkafka/rdkafka_mock.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct MockBroker {
    rd_kafka_t *rk;                 /* owner handle of the cluster */
    rd_kafka_mock_cluster_t *mc;
    char *bootstraps;               /* our copy, stable until stop */
    int n_brokers;
};

/* The owner handle needs no brokers; quieten its "no bootstrap.servers"
 * warning by keeping only errors in its log. */
static rd_kafka_t *owner_handle(char *err, size_t errlen) {
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", e, sizeof e) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "guardd-mockbroker", e, sizeof e) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        errmsg(err, errlen, "mock broker: %s", e);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        errmsg(err, errlen, "mock broker: cannot create handle: %s", e);
    }
    return rk;
}

MockBroker *mockbroker_start(int n_brokers, char *err, size_t errlen) {
    if (n_brokers < 1 || n_brokers > 16) {
        errmsg(err, errlen, "mock broker: broker count must be 1..16");
        return NULL;
    }
    MockBroker *mb = calloc(1, sizeof *mb);
    if (!mb) { errmsg(err, errlen, "mock broker: out of memory"); return NULL; }
    mb->n_brokers = n_brokers;
    mb->rk = owner_handle(err, errlen);
    if (!mb->rk) { free(mb); return NULL; }
    mb->mc = rd_kafka_mock_cluster_new(mb->rk, n_brokers);
    if (!mb->mc) {
        errmsg(err, errlen, "mock broker: cannot start the mock cluster (ports?)");
        rd_kafka_destroy(mb->rk);
        free(mb);
        return NULL;
    }
    const char *bs = rd_kafka_mock_cluster_bootstraps(mb->mc);
    mb->bootstraps = strdup(bs ? bs : "");
    if (!mb->bootstraps) { mockbroker_stop(mb); errmsg(err, errlen, "mock broker: out of memory"); return NULL; }
    return mb;
}

int mockbroker_create_topic(MockBroker *mb, const char *topic, int partitions,
                            char *err, size_t errlen) {
    if (!mb || !topic || !*topic || strlen(topic) > 249) {
        errmsg(err, errlen, "mock broker: bad topic name");
        return -1;
    }
    if (partitions < 1 || partitions > 1024) {
        errmsg(err, errlen, "mock broker: topic '%s': partitions must be 1..1024", topic);
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mb->mc, topic, partitions, 1);
    if (e) {
        errmsg(err, errlen, "mock broker: cannot create topic '%s': %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

const char *mockbroker_bootstraps(const MockBroker *mb) { return mb ? mb->bootstraps : NULL; }
int mockbroker_broker_count(const MockBroker *mb) { return mb ? mb->n_brokers : 0; }

static int valid_broker(const MockBroker *mb, int32_t id) {
    return mb && id >= 1 && id <= mb->n_brokers;
}

int mockbroker_broker_down(MockBroker *mb, int32_t broker_id) {
    if (!valid_broker(mb, broker_id)) return -1;
    return rd_kafka_mock_broker_set_down(mb->mc, broker_id) ? -1 : 0;
}

int mockbroker_broker_up(MockBroker *mb, int32_t broker_id) {
    if (!valid_broker(mb, broker_id)) return -1;
    return rd_kafka_mock_broker_set_up(mb->mc, broker_id) ? -1 : 0;
}

int mockbroker_set_rtt(MockBroker *mb, int32_t broker_id, int rtt_ms) {
    if (!valid_broker(mb, broker_id) || rtt_ms < 0) return -1;
    return rd_kafka_mock_broker_set_rtt(mb->mc, broker_id, rtt_ms) ? -1 : 0;
}

int mockbroker_push_request_errors(MockBroker *mb, int16_t api_key, size_t cnt,
                                   const rd_kafka_resp_err_t *errs) {
    if (!mb || api_key < 0 || (cnt && !errs)) return -1;
    if (cnt) rd_kafka_mock_push_request_errors_array(mb->mc, api_key, cnt, errs);
    return 0;
}

int mockbroker_topic_set_error(MockBroker *mb, const char *topic, rd_kafka_resp_err_t err) {
    if (!mb || !topic || !*topic) return -1;
    rd_kafka_mock_topic_set_error(mb->mc, topic, err);
    return 0;
}

int mockbroker_partition_set_leader(MockBroker *mb, const char *topic, int32_t partition,
                                    int32_t broker_id) {
    if (!mb || !topic || partition < 0) return -1;
    if (broker_id != -1 && !valid_broker(mb, broker_id)) return -1;
    return rd_kafka_mock_partition_set_leader(mb->mc, topic, partition, broker_id) ? -1 : 0;
}

int mockbroker_set_group_coordinator(MockBroker *mb, const char *group_id, int32_t broker_id) {
    if (!mb || !group_id || !valid_broker(mb, broker_id)) return -1;
    return rd_kafka_mock_coordinator_set(mb->mc, "group", group_id, broker_id) ? -1 : 0;
}

void mockbroker_stop(MockBroker *mb) {
    if (!mb) return;
    /* Order matters: cluster first, then the handle it lives in. */
    if (mb->mc) rd_kafka_mock_cluster_destroy(mb->mc);
    if (mb->rk) rd_kafka_destroy(mb->rk);
    free(mb->bootstraps);
    free(mb);
}
