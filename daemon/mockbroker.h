/* mockbroker.h - an in-memory Kafka cluster for tests, demos and
 * kafka.brokers = "embedded" (librdkafka's mock cluster, rdkafka_mock.h).
 *
 * This is the ONLY module that includes rdkafka_mock.h: the mock API is marked
 * experimental in librdkafka (no ABI promise), so its use stays in one small
 * place. Facts and quirks: shared/reference/kafka-mock.md.
 *
 * API (all functions are thread-safe: the mock runs on its own threads and
 * these calls post requests to it):
 *
 *   char err[256];
 *   MockBroker *mb = mockbroker_start(3, err, sizeof err);   // 3 brokers, ids 1..3
 *   mockbroker_create_topic(mb, "in", 4, err, sizeof err);   // 4 partitions, RF 1
 *   const char *bs = mockbroker_bootstraps(mb);              // "127.0.0.1:PORT,..."
 *   ... point any client (librdkafka, kafkajs) at bs ...
 *   mockbroker_broker_down(mb, 2); mockbroker_broker_up(mb, 2);
 *   mockbroker_push_request_errors(mb, MOCK_API_PRODUCE, 2, errs); // next 2 Produce fail
 *   mockbroker_set_rtt(mb, 1, 50);                           // +50 ms on broker 1
 *   mockbroker_stop(mb);   // mock cluster destroyed BEFORE its rd_kafka_t (else abort)
 *
 * Broker ids are 1..n. Ports are random (127.0.0.1:0). Topics that clients ask
 * for without creating them are auto-created with 4 partitions by the mock.
 * Everything is in memory: a stopped cluster forgets all data and offsets.
 * Functions returning int give 0 on success, -1 on a bad argument or a mock
 * error (with err filled where an err buffer is taken).
 */
#ifndef GUARDD_MOCKBROKER_H
#define GUARDD_MOCKBROKER_H
#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

typedef struct MockBroker MockBroker;

/* Kafka protocol API keys for mockbroker_push_request_errors (the public
 * rdkafka.h does not export the RD_KAFKAP_* names). */
enum {
    MOCK_API_PRODUCE = 0,
    MOCK_API_FETCH = 1,
    MOCK_API_LIST_OFFSETS = 2,
    MOCK_API_METADATA = 3,
    MOCK_API_OFFSET_COMMIT = 8,
    MOCK_API_OFFSET_FETCH = 9,
    MOCK_API_FIND_COORDINATOR = 10,
    MOCK_API_JOIN_GROUP = 11,
    MOCK_API_HEARTBEAT = 12,
    MOCK_API_LEAVE_GROUP = 13,
    MOCK_API_SYNC_GROUP = 14,
    MOCK_API_INIT_PRODUCER_ID = 22,
    MOCK_API_ADD_PARTITIONS_TO_TXN = 24,
    MOCK_API_ADD_OFFSETS_TO_TXN = 25,
    MOCK_API_END_TXN = 26,
    MOCK_API_TXN_OFFSET_COMMIT = 28
};

/* Starts a cluster of n_brokers (1..16). NULL with err set on failure. */
MockBroker *mockbroker_start(int n_brokers, char *err, size_t errlen);

/* Creates topic with `partitions` partitions (1..1024), replication factor 1.
 * Creating an existing topic is an error from the mock. */
int mockbroker_create_topic(MockBroker *mb, const char *topic, int partitions,
                            char *err, size_t errlen);

/* Comma-separated "host:port" list; owned by mb, valid until mockbroker_stop. */
const char *mockbroker_bootstraps(const MockBroker *mb);
int mockbroker_broker_count(const MockBroker *mb);

/* Fault injection. A down broker closes its connections and refuses new ones
 * until set up again; clients reconnect by themselves. */
int mockbroker_broker_down(MockBroker *mb, int32_t broker_id);
int mockbroker_broker_up(MockBroker *mb, int32_t broker_id);
/* Adds rtt_ms of latency to every response from broker_id (0 removes it). */
int mockbroker_set_rtt(MockBroker *mb, int32_t broker_id, int rtt_ms);
/* The next cnt requests of api_key (MOCK_API_*) to any broker fail with
 * errs[0..cnt-1] in order. Retriable errors are retried by librdkafka; a
 * non-retriable one (RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) fails deliveries. */
int mockbroker_push_request_errors(MockBroker *mb, int16_t api_key, size_t cnt,
                                   const rd_kafka_resp_err_t *errs);
/* Every request for topic gets err (RD_KAFKA_RESP_ERR_NO_ERROR clears it). */
int mockbroker_topic_set_error(MockBroker *mb, const char *topic, rd_kafka_resp_err_t err);
/* Moves a partition's leader; broker_id -1 makes it leader-less. */
int mockbroker_partition_set_leader(MockBroker *mb, const char *topic, int32_t partition,
                                    int32_t broker_id);
/* Makes broker_id the group coordinator of group_id. */
int mockbroker_set_group_coordinator(MockBroker *mb, const char *group_id, int32_t broker_id);

/* Destroys the cluster, then its handle. NULL is a no-op. */
void mockbroker_stop(MockBroker *mb);

#endif
