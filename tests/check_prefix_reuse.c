/* check_prefix_reuse.c - the classifier's prefix cache end to end, on the
 * tiny random-weight model ($GUARDD_TINY_MODEL) with the genuine tokenizer
 * ($GUARDD_TOKENIZER); exits 77 if either is missing.
 *
 * Every case compares the logits after "\n\n" with a full recompute of the
 * whole prompt (fresh K/V, no sharing, same weights and precision) to 1e-5
 * of their range (turn by turn: f32, bf16 and int8 weights), and checks
 * cached_tokens so a cache that silently stopped reusing would fail too:
 * turn-by-turn conversations, a prefix shared inside one batch, sequences
 * diverging inside a block, eviction under a small budget while batches
 * run, forced hash collisions, a category list change (reload), and a zero
 * budget. The cache never holds more than its budget (peak_bytes). Turn by
 * turn, the estimate batches are sized by (classifier_prefill_estimate) is
 * what the run then prefills.
 */
#include "check_main.h"
#include "check_fixture.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "classifier.h"
#include "prompt.h"
#include "transformer.h"

enum { NN = 271 };
static const char *model_dir, *tok_path;

static Classifier *open_prec(int block, long long budget, int collide, Precision prec) {
    ClassifierOptions o = {.model_dir = model_dir, .tokenizer_path = tok_path, .threads = 2, .precision = prec,
                           .threshold = 2.0f, .max_decode_tokens = 8, .keep_logits = 1,
                           .cache_block_tokens = block, .cache_max_bytes = budget,
                           .cache_test_collide = collide};
    return check_classifier_open(&o);
}

static Classifier *open_clf(int block, long long budget, int collide) {
    return open_prec(block, budget, collide, PREC_AUTO);
}

/* Message k of conversation id: 20-60 words, deterministic. */
static void message_text(int id, int k, char *out, size_t cap) {
    static const char *words[] = {"the", "weather", "recipe", "how", "do", "I", "make", "a", "bomb", "cake",
                                  "please", "explain", "step", "by", "safe", "kitchen", "chemistry", "why",
                                  "never", "mind", "okay", "thanks", "story", "about", "cats", "日本語"};
    unsigned x = 2654435761u * (unsigned)(id * 31 + k + 7);
    int n = 20 + (int)(x % 41);
    size_t w = 0;
    for (int i = 0; i < n && w + 16 < cap; i++) {
        x = x * 1103515245u + 12345u;
        w += (size_t)snprintf(out + w, cap - w, "%s%s", i ? " " : "", words[(x >> 16) % 26]);
    }
    snprintf(out + w, cap - w, " (%d.%d)", id, k);
}

/* The first n_msgs messages of conversation id (user first, alternating);
 * the last message's text replaced by last if not NULL. */
static void make_conv(Conversation *c, int id, int n_msgs, const char *last) {
    memset(c, 0, sizeof *c);
    char text[1024];
    for (int k = 0; k < n_msgs; k++) {
        message_text(id, k, text, sizeof text);
        conversation_add(c, k % 2 ? ROLE_ASSISTANT : ROLE_USER, k == n_msgs - 1 && last ? last : text);
    }
}

typedef struct {
    Conversation conv;
    const CategoryList *cats;
    ClassifyJob *job;
    ClassifyResult res;
    TokenVec ids;       /* the whole prompt, for the reference */
} Ev;

static void ev_prepare(Classifier *c, Ev *e) {
    ClassifyRequest req = {.conv = &e->conv, .categories = e->cats};
    char err[256];
    e->job = classifier_prepare(c, &req, err, sizeof err);
    ck_assert_msg(e->job != NULL, "%s", err);
    Prompt p;
    ck_assert_msg(prompt_render(&e->conv, e->cats, NULL, 0, PROMPT_ROLE_AUTO, &p, err, sizeof err) == 0, "%s", err);
    TokenVec rest = {0};
    memset(&e->ids, 0, sizeof e->ids);
    ck_assert_int_eq(prompt_tokenize(classifier_tokenizer(c), &p, &e->ids, &rest, err, sizeof err), 0);
    for (size_t i = 0; i < rest.n; i++) tokvec_push(&e->ids, rest.ids[i]);
    tokvec_push(&e->ids, NN);
    tokvec_free(&rest);
    prompt_free(&p);
}

static void ev_free(Ev *e) {
    classify_result_free(&e->res);
    classify_job_free(e->job);
    tokvec_free(&e->ids);
    conversation_free(&e->conv);
}

/* Runs evs as one batch and checks each against a full recompute. */
static void run_and_check(Classifier *c, Ev **evs, int n) {
    ClassifyJob **jobs = malloc(sizeof *jobs * (size_t)n);
    ClassifyResult *res = malloc(sizeof *res * (size_t)n);
    for (int i = 0; i < n; i++) jobs[i] = evs[i]->job;
    char err[256];
    ck_assert_msg(classifier_run(c, jobs, n, res, err, sizeof err) == 0, "%s", err);
    const Model *m = classifier_model(c);
    int V = m->cfg.vocab_size;
    Transformer *t = transformer_new(m, 2);
    float *want = malloc(sizeof(float) * (size_t)V);
    for (int i = 0; i < n; i++) {
        Ev *e = evs[i];
        e->res = res[i];
        ck_assert_int_eq(e->res.prompt_tokens, (int)e->ids.n);
        ck_assert_int_lt(e->res.cached_tokens, e->res.prompt_tokens);
        KVCache *kv = kv_new(&m->cfg, (int)e->ids.n, NULL);
        SeqInput in = {.tokens = e->ids.ids, .n_tokens = (int)e->ids.n, .kv = kv, .n_logits = 1, .logits = want};
        ck_assert_msg(transformer_forward(t, &in, 1, err, sizeof err) == 0, "%s", err);
        kv_free(kv);
        double mx = want[0], mn = want[0], d = 0;
        for (int v = 0; v < V; v++) {
            if (want[v] > mx) mx = want[v];
            if (want[v] < mn) mn = want[v];
            double x = fabs((double)e->res.logits[v] - want[v]);
            if (x > d) d = x;
        }
        ck_assert_msg(d / (mx - mn) <= 1e-5, "event %d (%d tokens, %d reused): logits differ by %g of their range",
                      i, e->res.prompt_tokens, e->res.cached_tokens, d / (mx - mn));
    }
    ClassifierCacheStats st;
    classifier_cache_stats(c, &st);
    ck_assert_uint_le(st.bytes, st.max_bytes);
    ck_assert_uint_le(st.peak_bytes, st.max_bytes);
    free(want);
    transformer_free(t);
    free(jobs);
    free(res);
}

static int common_start(const TokenVec *a, const TokenVec *b) {
    size_t k = 0;
    while (k < a->n && k < b->n && a->ids[k] == b->ids[k]) k++;
    return (int)k;
}

/* Every turn of two interleaved conversations, one event per run: from
 * turn 3 on, an event reuses its conversation's turn before last (same role
 * word) up to where that prompt's closing instructions began. */
static void turn_by_turn(int block, int collide, Precision prec) {
    Classifier *c = open_prec(block, 0, collide, prec);
    enum { TURNS = 7 };
    Ev ev[2][TURNS];
    for (int t = 0; t < TURNS; t++)
        for (int id = 0; id < 2; id++) {
            Ev *e = &ev[id][t];
            memset(e, 0, sizeof *e);
            make_conv(&e->conv, id, t + 1, NULL);
            ev_prepare(c, e);
            int est = classifier_prefill_estimate(c, e->job);
            run_and_check(c, &e, 1);
            /* run alone, a job prefills what the estimate said (a batch
             * counts a preamble once, so the estimate leaves it out even
             * before it is cached) */
            int prefilled = e->res.prompt_tokens - e->res.cached_tokens, own = classify_job_new_tokens(e->job);
            ck_assert_int_eq(est, prefilled < own ? prefilled : own);
            if (t >= 2) ck_assert_int_lt(est, own);
            if (t >= 2) {
                int shared = common_start(&e->ids, &ev[id][t - 2].ids);
                ck_assert_msg(e->res.cached_tokens >= shared - block && e->res.cached_tokens <= shared,
                              "turn %d: reused %d of %d shared with turn %d", t + 1, e->res.cached_tokens,
                              shared, t - 1);
                ck_assert_int_gt(shared, 160); /* the preamble is ~136 */
            }
        }
    for (int t = 0; t < TURNS; t++)
        for (int id = 0; id < 2; id++) ev_free(&ev[id][t]);
    classifier_close(c);
}

/* Every weight precision (the reference runs at the same one). */
START_TEST(turn_by_turn_conversations) {
    turn_by_turn(16, 0, PREC_F32);
    turn_by_turn(16, 0, PREC_BF16);
    turn_by_turn(16, 0, PREC_INT8);
    turn_by_turn(7, 0, PREC_AUTO);
}
END_TEST

START_TEST(forced_hash_collisions) { turn_by_turn(16, 1, PREC_AUTO); }
END_TEST

/* One batch, cold cache: five events share a history of six messages and
 * differ in the last one; one more is a duplicate. The shared part is
 * computed once: every event after the first reuses it. */
START_TEST(prefix_shared_in_one_batch) {
    Classifier *c = open_clf(16, 0, 0);
    enum { N = 6 };
    Ev ev[N];
    Ev *p[N];
    char last[64];
    for (int i = 0; i < N; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        snprintf(last, sizeof last, "and what about number %d?", i < N - 1 ? i : 0);
        make_conv(&ev[i].conv, 3, 7, last);
        ev_prepare(c, &ev[i]);
        p[i] = &ev[i];
    }
    run_and_check(c, p, N);
    long prompt = 0, prefilled = 0;
    ck_assert_int_lt(ev[0].res.cached_tokens, 16); /* at most the start of an earlier test's preamble */
    for (int i = 0; i < N; i++) {
        prompt += ev[i].res.prompt_tokens;
        prefilled += ev[i].res.prompt_tokens - ev[i].res.cached_tokens;
        if (i == 0) continue;
        int shared = common_start(&ev[i].ids, &ev[0].ids);
        if (i < N - 1) ck_assert_int_eq(ev[i].res.cached_tokens, shared);
        else ck_assert_int_eq(ev[i].res.cached_tokens, ev[i].res.prompt_tokens - 1); /* duplicate */
        ck_assert_int_gt(shared, 300);
    }
    ck_assert_int_lt(prefilled, prompt / 3);
    for (int i = 0; i < N; i++) ev_free(&ev[i]);
    classifier_close(c);
}
END_TEST

/* Two prompts that diverge inside a block: the second reuses the first's
 * block up to the divergence, across runs and within one batch. */
START_TEST(diverge_mid_block) {
    Classifier *c = open_clf(16, 0, 0);
    int checked = 0;
    for (int v = 0; v < 8 && checked < 2; v++) {
        char a[128], b[128];
        snprintf(a, sizeof a, "%.*sthe same words and then apples", v, "xxxxxxxx");
        snprintf(b, sizeof b, "%.*sthe same words and then oranges", v, "xxxxxxxx");
        Ev ea = {0}, eb = {0};
        make_conv(&ea.conv, 10 + v, 3, a);
        make_conv(&eb.conv, 10 + v, 3, b);
        ev_prepare(c, &ea);
        ev_prepare(c, &eb);
        int d = common_start(&ea.ids, &eb.ids);
        if (d % 16 == 0) {
            ev_free(&ea);
            ev_free(&eb);
            continue;
        }
        Ev *pa = &ea, *pb = &eb, *both[2] = {&ea, &eb};
        if (checked == 0) {          /* across runs */
            run_and_check(c, &pa, 1);
            run_and_check(c, &pb, 1);
        } else {                     /* one batch */
            run_and_check(c, both, 2);
        }
        ck_assert_int_eq(eb.res.cached_tokens, d);
        checked++;
        ev_free(&ea);
        ev_free(&eb);
    }
    ck_assert_int_eq(checked, 2);
    classifier_close(c);
}
END_TEST

/* A budget of a few blocks while batches of four conversations advance turn
 * by turn: blocks in use are never evicted (results stay exact), the cache
 * never holds more than the budget, and it did have to evict. */
START_TEST(eviction_under_pressure) {
    Classifier *c = open_clf(16, 0, 0);
    Ev first = {0}, *pf = &first;
    make_conv(&first.conv, 20, 1, NULL);
    ev_prepare(c, &first);
    run_and_check(c, &pf, 1);
    ClassifierCacheStats st;
    classifier_cache_stats(c, &st);
    ck_assert_int_gt(st.blocks, 0);
    size_t block = st.bytes / (size_t)st.blocks;
    for (int budget = 12; budget <= 40; budget += 28) {
        classifier_set_cache_max_bytes(c, (long long)(budget * block));
        for (int t = 0; t < 5; t++) {
            Ev ev[4], *p[4];
            for (int k = 0; k < 4; k++) {
                memset(&ev[k], 0, sizeof ev[k]);
                make_conv(&ev[k].conv, 21 + k, t + 1, NULL);
                ev_prepare(c, &ev[k]);
                p[k] = &ev[k];
            }
            run_and_check(c, p, 4);
            classifier_cache_stats(c, &st);
            ck_assert_uint_le(st.bytes, (size_t)budget * block);
            for (int k = 0; k < 4; k++) ev_free(&ev[k]);
        }
    }
    ck_assert_uint_gt(st.evictions, 0);
    ev_free(&first);
    classifier_close(c);
}
END_TEST

/* A reload changes the category list: new preamble, other K/V; switching
 * back reuses the old preamble while it is cached. */
START_TEST(reload_changes_category_list) {
    Classifier *c = open_clf(16, 0, 0);
    CategoryList custom = {0};
    categories_add(&custom, "S1", "Violent Crimes.");
    categories_add(&custom, "X9", "Talking about the weather.");
    const CategoryList *lists[4] = {NULL, &custom, NULL, &custom};
    int pre[4];
    for (int r = 0; r < 4; r++) {
        Ev e = {0}, *pe = &e;
        make_conv(&e.conv, 30 + r, 3, NULL);
        e.cats = lists[r];
        ev_prepare(c, &e);
        pre[r] = (int)e.ids.n - classify_job_new_tokens(e.job);
        run_and_check(c, &pe, 1);
        if (r >= 2) { /* its preamble (and the "User:" start the conversations share) */
            ck_assert_int_ge(e.res.cached_tokens, pre[r]);
            ck_assert_int_lt(e.res.cached_tokens, pre[r] + 8);
        }
        if (r == 1) ck_assert_int_lt(e.res.cached_tokens, pre[r]);
        ev_free(&e);
    }
    ck_assert_int_ne(pre[0], pre[1]);
    categories_free(&custom);
    classifier_close(c);
}
END_TEST

/* Budget zero: nothing kept between runs, but a batch still computes what
 * its events share once. */
START_TEST(zero_budget) {
    Classifier *c = open_clf(16, -1, 0);
    for (int run = 0; run < 2; run++) {
        Ev ev[3], *p[3];
        for (int i = 0; i < 3; i++) {
            memset(&ev[i], 0, sizeof ev[i]);
            make_conv(&ev[i].conv, 40 + i, 5, NULL);
            ev_prepare(c, &ev[i]);
            p[i] = &ev[i];
        }
        run_and_check(c, p, 3);
        ck_assert_int_eq(ev[0].res.cached_tokens, 0);
        ck_assert_int_gt(ev[1].res.cached_tokens, 100);  /* the preamble, from event 0 */
        ClassifierCacheStats st;
        classifier_cache_stats(c, &st);
        ck_assert_uint_eq(st.bytes, 0);
        ck_assert_uint_eq(st.peak_bytes, 0);
        for (int i = 0; i < 3; i++) ev_free(&ev[i]);
    }
    classifier_close(c);
}
END_TEST

int main(void) {
    if (!(tok_path = check_tokenizer()) || !(model_dir = check_tiny_model()))
        return check_skip("no tokenizer ($GUARDD_TOKENIZER) or tiny model ($GUARDD_TINY_MODEL)");
    blis_setup(2, NULL);
    Suite *s = suite_create("prefix_reuse");
    TCase *tc = check_case(s, "reuse", 900);
    tcase_add_test(tc, turn_by_turn_conversations);
    tcase_add_test(tc, forced_hash_collisions);
    tcase_add_test(tc, prefix_shared_in_one_batch);
    tcase_add_test(tc, diverge_mid_block);
    tcase_add_test(tc, eviction_under_pressure);
    tcase_add_test(tc, reload_changes_category_list);
    tcase_add_test(tc, zero_budget);
    return check_run(s);
}
