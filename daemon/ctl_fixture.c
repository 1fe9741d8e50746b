/* ctl_fixture.c - guardctl fixture: writes a random-weight Llama checkpoint.
 *
 *   guardctl fixture --preset tiny|tiny-8b|llama-guard-3-1b|llama-guard-3-8b --seed N --out DIR
 *       [--tokenizer FILE] [--tied] [--dtype bf16|f16|f32] [--shards N]
 *       [--header-only] [--layers N] [--dim N] [--heads N] [--kv-heads N]
 *       [--head-dim N] [--hidden N] [--vocab N] [--max-pos N]
 *       [--rope-theta X] [--no-rope-scaling] [--rope-factor X]
 *       [--rope-orig-max-pos N]
 *
 * Starts from the preset's config, applies the overrides, and writes through
 * fixture_write() (which validates the result with the real config parser).
 * --tokenizer copies FILE to DIR/tokenizer.json and writes a
 * tokenizer_config.json carrying the preset family's chat template (the 1B's
 * for tiny and llama-guard-3-1b, the 8B's for tiny-8b and llama-guard-3-8b),
 * so guardd detects the prompt format from DIR as for a real download.
 * If --dim or --heads is given without --head-dim, head_dim becomes
 * dim / heads. If --vocab is too small for the preset's token ids, bos becomes
 * 0 and eos becomes vocab - 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ctl.h"
#include "fixture.h"

static int usage(void) {
    fprintf(stderr, "usage: guardctl fixture --preset tiny|tiny-8b|llama-guard-3-1b|llama-guard-3-8b --out DIR\n"
                    "  [--seed N] [--tied]\n"
                    "  [--tokenizer FILE] [--dtype bf16|f16|f32] [--shards N] [--header-only]\n"
                    "  [--layers N] [--dim N] [--heads N] [--kv-heads N] [--head-dim N] [--hidden N]\n"
                    "  [--vocab N] [--max-pos N] [--rope-theta X] [--no-rope-scaling] [--rope-factor X]\n"
                    "  [--rope-orig-max-pos N]\n");
    return 2;
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "guardctl fixture: %s needs an integer in [%ld, %ld], got \"%s\"\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (*end || end == s || !(v > 0)) {
        fprintf(stderr, "guardctl fixture: %s needs a positive number, got \"%s\"\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int copy_file(const char *src, const char *dir) {
    char dst[4200];
    snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[65536];
    size_t n;
    int bad = !out;
    while (!bad && (n = fread(buf, 1, sizeof buf, in)) > 0) bad = fwrite(buf, 1, n, out) != n;
    bad |= in && ferror(in);
    if (in) fclose(in);
    if (out && fclose(out)) bad = 1;
    if (bad) fprintf(stderr, "guardctl fixture: cannot copy %s to %s: %s\n", src, dst, strerror(errno));
    return bad ? -1 : 0;
}

typedef struct {
    const char *preset, *out, *tokenizer;
    int head_dim_set, shape_set;
} Opts;

/* Applies one option with a value; returns 0, -1 (error) or 1 (unknown). */
static int apply_int(FixtureSpec *sp, Opts *o, const char *k, const char *v) {
    static const struct { const char *name; long lo, hi; } T[] = {
        {"--layers", 1, 1024}, {"--dim", 1, 65536}, {"--heads", 1, 1024}, {"--kv-heads", 1, 1024},
        {"--head-dim", 1, 1024}, {"--hidden", 1, 1 << 20}, {"--vocab", 1, 1 << 22},
        {"--max-pos", 1, 1 << 24}, {"--rope-orig-max-pos", 1, 1 << 24}, {"--shards", 1, 100000}};
    ModelConfig *c = &sp->cfg;
    int *dst[] = {&c->n_layers, &c->dim, &c->n_heads, &c->n_kv_heads, &c->head_dim, &c->hidden_dim,
                  &c->vocab_size, &c->max_pos, &c->rope_orig_max_pos, &sp->shards};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        if (strcmp(k, T[i].name)) continue;
        long x;
        if (parse_long(k, v, T[i].lo, T[i].hi, &x)) return -1;
        *dst[i] = (int)x;
        o->head_dim_set |= i == 4;
        o->shape_set |= i == 1 || i == 2;
        return 0;
    }
    return 1;
}

static int apply_valued(FixtureSpec *sp, Opts *o, const char *k, const char *v) {
    long x;
    if (!strcmp(k, "--preset") || !strcmp(k, "--out") || !strcmp(k, "--tokenizer")) return 0; /* first pass */
    if (!strcmp(k, "--seed")) {
        if (parse_long(k, v, 0, __LONG_MAX__, &x)) return -1;
        sp->seed = (uint64_t)x;
        return 0;
    }
    if (!strcmp(k, "--dtype")) {
        if (!strcmp(v, "bf16")) sp->dtype = ST_BF16;
        else if (!strcmp(v, "f16")) sp->dtype = ST_F16;
        else if (!strcmp(v, "f32")) sp->dtype = ST_F32;
        else { fprintf(stderr, "guardctl fixture: --dtype must be bf16, f16 or f32\n"); return -1; }
        return 0;
    }
    if (!strcmp(k, "--rope-theta")) return parse_float(k, v, &sp->cfg.rope_theta);
    if (!strcmp(k, "--rope-factor")) return parse_float(k, v, &sp->cfg.rope_factor);
    return apply_int(sp, o, k, v);
}

static int is_flag(const char *k) {
    return !strcmp(k, "--tied") || !strcmp(k, "--no-rope-scaling") || !strcmp(k, "--header-only");
}

static int parse_args(int argc, char **argv, FixtureSpec *sp, Opts *o) {
    for (int i = 1; i < argc; i++) {       /* first pass: the preset, which the rest modify */
        if (is_flag(argv[i])) continue;
        if (i + 1 >= argc) { fprintf(stderr, "guardctl fixture: %s needs a value\n", argv[i]); return -1; }
        if (!strcmp(argv[i], "--preset")) o->preset = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) o->out = argv[i + 1];
        else if (!strcmp(argv[i], "--tokenizer")) o->tokenizer = argv[i + 1];
        i++;
    }
    char err[512];
    if (!o->preset || !o->out) return usage();
    if (fixture_preset(o->preset, sp, err, sizeof err)) { fprintf(stderr, "guardctl fixture: %s\n", err); return -1; }
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--tied")) sp->cfg.tied = 1;
        else if (!strcmp(k, "--no-rope-scaling")) sp->cfg.rope_llama3 = 0;
        else if (!strcmp(k, "--header-only")) sp->header_only = 1;
        else {
            int r = apply_valued(sp, o, k, argv[++i]);
            if (r > 0) { fprintf(stderr, "guardctl fixture: unknown option %s\n", k); return usage(); }
            if (r < 0) return -1;
        }
    }
    return 0;
}

static void fix_derived(ModelConfig *c, const Opts *o) {
    if (o->shape_set && !o->head_dim_set && c->n_heads > 0) c->head_dim = c->dim / c->n_heads;
    int fits = c->bos_id < c->vocab_size;
    for (int i = 0; i < c->n_eos; i++) fits &= c->eos_ids[i] < c->vocab_size;
    if (!fits) {
        c->bos_id = 0;
        c->n_eos = 1;
        c->eos_ids[0] = c->vocab_size - 1;
    }
}

int ctl_fixture(int argc, char **argv) {
    FixtureSpec sp;
    Opts o = {0};
    char err[1024];
    int r = parse_args(argc, argv, &sp, &o);
    if (r) return r < 0 ? 1 : r;
    fix_derived(&sp.cfg, &o);
    if (o.tokenizer && access(o.tokenizer, R_OK)) {   /* before spending time on the weights */
        fprintf(stderr, "guardctl fixture: --tokenizer %s: %s\n", o.tokenizer, strerror(errno));
        return 1;
    }
    if (fixture_write(o.out, &sp, err, sizeof err)) {
        fprintf(stderr, "guardctl fixture: %s\n", err);
        return 1;
    }
    if (o.tokenizer && copy_file(o.tokenizer, o.out)) return 1;
    if (o.tokenizer && fixture_write_tokenizer_config(o.out, sp.prompt_format, sp.cfg.max_pos, err, sizeof err)) {
        fprintf(stderr, "guardctl fixture: %s\n", err);
        return 1;
    }
    printf("%s\n", o.out);
    return 0;
}
