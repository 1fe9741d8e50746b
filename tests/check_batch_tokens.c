/* check_batch_tokens.c - guardd's micro-batches are sized by the tokens the
 * engine will prefill, not by whole prompts: the turns of long conversations
 * whose history is in the prefix cache share a batch.
 *
 * The real pipeline (pipeline.h) in-process against a one-broker mock cluster,
 * with the tiny fixture model ($GUARDD_TINY_MODEL; skipped without it) and
 * batch.max_tokens = 1024. First, turn 1 of six conversations: one long user
 * message each (~600 tokens, prompts of ~750): nothing of them is cached
 * beyond the policy preamble, so each is its own batch. Then turn 3 of the
 * same six (the long message, a short agent reply, a short user message):
 * prompts of ~800 tokens, two of which would pass the budget, but each starts
 * with its turn 1 (same role word, User), which the cache holds, so each
 * prefills ~120 tokens and all six fit one budget. The verdicts' timing says
 * how many events their batch held (batch_size) and how many prompt positions
 * were reused (cached_tokens): some turn-3 batch must hold more than one
 * event, and every turn-3 event must have reused its history.
 */
#include "check_main.h"
#include "check_fixture.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "classifier.h"
#include "event.h"
#include "kafka_util.h"
#include "log.h"
#include "mockbroker.h"
#include "pipeline.h"
#include "settings.h"

enum { CONVS = 6, MAX_TOKENS = 1024 };

static const char *model_dir;
static char conf_path[128];
static const char *topics[] = {"in", "allow", "deny", "dlq"};

typedef struct { int batch_size, prompt_tokens, cached_tokens; } Seen;
static Seen seen[2 * CONVS];    /* by input offset */
static int n_seen;

/* The long first message of conversation id: ~550 words of ~1 token each. */
static void long_message(int id, char *out, size_t cap) {
    static const char *words[] = {"the", "garden", "needs", "water", "and", "sunlight", "every", "day",
                                  "so", "please", "tell", "me", "how", "to", "plan", "it"};
    size_t w = (size_t)snprintf(out, cap, "Conversation %d.", id);
    unsigned x = 2654435761u * (unsigned)(id + 1);
    for (int i = 0; i < 550 && w + 16 < cap; i++) {
        x = x * 1103515245u + 12345u;
        w += (size_t)snprintf(out + w, cap - w, " %s", words[(x >> 16) % 16]);
    }
}

/* Turn `turn` (1 or 3) of conversation id, encoded as an event. */
static void *conv_event(int id, int turn, size_t *len) {
    ConversationEvent ev = {0};
    char eid[32], text[8192];
    snprintf(eid, sizeof eid, "c%d-t%d", id, turn);
    ev.id = eid;
    long_message(id, text, sizeof text);
    conversation_add(&ev.conv, ROLE_USER, text);
    if (turn == 3) {
        conversation_add(&ev.conv, ROLE_ASSISTANT, "Water in the morning, twice a week, and mulch the beds.");
        conversation_add(&ev.conv, ROLE_USER, "And what about the tomatoes in the shade by the wall?");
    }
    void *buf = event_encode(&ev, len);
    conversation_free(&ev.conv);
    ck_assert_ptr_nonnull(buf);
    return buf;
}

static void produce_turn(KafkaProducer *kp, int turn) {
    char err[256], key[16];
    for (int id = 0; id < CONVS; id++) {
        size_t len = 0;
        void *buf = conv_event(id, turn, &len);
        snprintf(key, sizeof key, "conv-%d", id);
        ck_assert_msg(kafka_producer_send(kp, "in", 0, key, strlen(key), buf, len, NULL, 0, err,
                                          sizeof err) == 0, "%s", err);
        free(buf);
    }
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "input not delivered: %s", err);
}

/* Reads verdicts (allow and deny) until `want` inputs have one. */
static void read_verdicts(rd_kafka_t *readers[2], int want, int timeout_s) {
    for (int t = 0; t < timeout_s * 10 && n_seen < want; t++) {
        for (int r = 0; r < 2; r++) {
            rd_kafka_message_t *m;
            while ((m = rd_kafka_consumer_poll(readers[r], 0))) {
                if (!m->err) {
                    json_t *j = record_to_json_value(m->payload, m->len);
                    ck_assert_ptr_nonnull(j);
                    const char *rid = json_string_value(json_object_get(j, "record_id"));
                    long off = -1;
                    ck_assert_msg(rid && sscanf(rid, "in/0/%ld", &off) == 1 && off >= 0 && off < 2 * CONVS,
                                  "unexpected record_id %s", rid ? rid : "(none)");
                    json_t *tm = json_object_get(j, "timing");
                    if (seen[off].batch_size == 0) {
                        seen[off] = (Seen){(int)json_integer_value(json_object_get(tm, "batch_size")),
                                           (int)json_integer_value(json_object_get(tm, "prompt_tokens")),
                                           (int)json_integer_value(json_object_get(tm, "cached_tokens"))};
                        ck_assert_int_gt(seen[off].batch_size, 0);
                        n_seen++;
                    }
                    json_decref(j);
                }
                rd_kafka_message_destroy(m);
            }
        }
        if (n_seen < want) usleep(100000);
    }
    ck_assert_msg(n_seen >= want, "%d verdicts within %d s, want %d", n_seen, timeout_s, want);
}

START_TEST(test_cached_history_batches_by_new_tokens) {
    char err[512];
    MockBroker *mb = mockbroker_start(1, err, sizeof err);
    ck_assert_msg(mb != NULL, "%s", err);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(mockbroker_create_topic(mb, topics[i], 1, err, sizeof err), 0);
    const char *bs = mockbroker_bootstraps(mb);

    snprintf(conf_path, sizeof conf_path, "/tmp/check_batch_tokens-%d.conf", (int)getpid());
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    /* max_wait_ms: long enough for all six turn-3 events to be queued
     * before their batch closes, on a loaded machine too */
    fprintf(f,
            "kafka = { brokers = \"%s\"; group_id = \"batch-tokens\"; input_topics = [\"in\"];\n"
            "  allow_topic = \"allow\"; deny_topic = \"deny\"; dlq_topic = \"dlq\"; };\n"
            "model = { path = \"%s\"; threads = 1; };\n"
            "batch = { max_events = 8; max_tokens = %d; max_wait_ms = 3000; queue_capacity = 16; };\n"
            "limits = { max_prompt_tokens = %d; };\n"
            "metrics = { listen = \"\"; };\n"
            "log = { level = \"warn\"; };\n",
            bs, model_dir, MAX_TOKENS, MAX_TOKENS);
    fclose(f);
    Settings s;
    ck_assert_msg(settings_load(conf_path, &s, err, sizeof err) == 0, "%s", err);
    unlink(conf_path);
    log_set_level(s.log_level);
    ClassifierOptions o = {.model_dir = model_dir, .threads = 1, .threshold = -1,
                           .max_prompt_tokens = s.max_prompt_tokens};
    Classifier *clf = check_classifier_open(&o);
    Pipeline *p = pipeline_start(&s, bs, clf, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);

    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    rd_kafka_t *readers[2];
    for (int r = 0; r < 2; r++) {
        readers[r] = kafka_reader_new(bs, NULL, 0, topics[r + 1], RD_KAFKA_OFFSET_BEGINNING, 10000,
                                      err, sizeof err);
        ck_assert_msg(readers[r] != NULL, "%s", err);
    }

    produce_turn(kp, 1);
    read_verdicts(readers, CONVS, 120);
    for (int i = 0; i < CONVS; i++) {
        /* the premise: two whole prompts pass the budget, so batches sized
         * by whole prompts (or by everything after the preamble) hold one */
        ck_assert_int_gt(seen[i].prompt_tokens, MAX_TOKENS / 2);
        ck_assert_int_eq(seen[i].batch_size, 1);
    }
    produce_turn(kp, 3);
    read_verdicts(readers, 2 * CONVS, 120);
    int most = 0;
    for (int i = CONVS; i < 2 * CONVS; i++) {
        ck_assert_int_gt(seen[i].prompt_tokens, MAX_TOKENS / 2);
        ck_assert_int_le(seen[i].prompt_tokens, MAX_TOKENS);
        /* its turn 1 up to that prompt's closing instructions */
        ck_assert_msg(seen[i].cached_tokens >= seen[i - CONVS].prompt_tokens - 64,
                      "turn 3 of conversation %d reused %d of %d tokens (turn 1: %d)", i - CONVS,
                      seen[i].cached_tokens, seen[i].prompt_tokens, seen[i - CONVS].prompt_tokens);
        if (seen[i].batch_size > most) most = seen[i].batch_size;
    }
    ck_assert_msg(most >= 2, "turn-3 batches held at most %d event(s): sized by whole prompts", most);
    printf("turn 3: prompts of %d tokens, %d reused; largest batch %d events\n", seen[CONVS].prompt_tokens,
           seen[CONVS].cached_tokens, most);

    ck_assert_int_eq(pipeline_stop(p, 15000), 0);
    classifier_close(clf);
    settings_free(&s);
    for (int r = 0; r < 2; r++) kafka_reader_destroy(readers[r]);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
}
END_TEST

int main(void) {
    if (!(model_dir = check_tiny_model())) return check_skip("no tiny model at $GUARDD_TINY_MODEL");
    Suite *s = suite_create("batch_tokens");
    TCase *tc = check_case(s, "pipeline", 300);
    tcase_add_test(tc, test_cached_history_batches_by_new_tokens);
    return check_run(s);
}
