/* check_loader.c - config.json parsing, model_load() and the fixture writer.
 *
 * Config cases write small config.json variants and check the parsed fields
 * or the refusal message (which must name the file and the field). Round
 * trips write fixtures in every dtype, sharded and not, tied and not, load
 * them, and compare every loaded f32 weight bit for bit with the raw file
 * bytes decoded here by code independent of the loader (own header parse,
 * own f16/bf16 decoding), and within dtype precision with fixture_value();
 * bf16 and int8 loads are compared with the f32 load exactly (the bf16
 * rounding, the int8 quantization of each row), also on tensors spanning
 * several of the loader's units of work.
 * Layout errors (missing / unexpected / misshapen tensors) are produced by
 * rewriting a fixture's header.
 */
#include "check_main.h"
#include "check_fixture.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bf16.h"
#include "fixture.h"
#include "model.h"

/* ---- config.json ---------------------------------------------------- */

/* The genuine Llama Guard 3 1B config.json, verbatim. */
static const char *REAL_CONFIG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009], \"head_dim\": 64,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 2048, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"mlp_bias\": false,"
    " \"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 16,"
    " \"num_key_value_heads\": 8, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05,"
    " \"rope_scaling\": {\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, \"rope_theta\": 500000.0,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.45.0.dev0\","
    " \"use_cache\": true, \"vocab_size\": 128256}";

static char cfg_path[512];

/* Writes REAL_CONFIG with `key` set to the JSON `value` (NULL deletes it). */
static const char *config_with(const char *key, const char *value) {
    json_t *root = json_loads(REAL_CONFIG, 0, NULL);
    ck_assert_ptr_nonnull(root);
    if (key && value) {
        json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
        ck_assert_msg(v != NULL, "bad test JSON %s", value);
        json_object_set_new(root, key, v);
    } else if (key) {
        json_object_del(root, key);
    }
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", check_tmpdir);
    ck_assert_int_eq(json_dump_file(root, cfg_path, 0), 0);
    json_decref(root);
    return cfg_path;
}

static void expect_refused(const char *path, const char *field) {
    ModelConfig c;
    char err[1024] = "";
    ck_assert_int_eq(model_config_load(path, &c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, path), "error does not name the file: %s", err);
    ck_assert_msg(strstr(err, field), "error does not name \"%s\": %s", field, err);
}

static ModelConfig parse_ok(const char *path) {
    ModelConfig c;
    char err[1024];
    ck_assert_msg(model_config_load(path, &c, err, sizeof err) == 0, "%s", err);
    return c;
}

START_TEST(real_config_parses) {
    ModelConfig c = parse_ok(config_with(NULL, NULL));
    ck_assert_int_eq(c.n_layers, 16);
    ck_assert_int_eq(c.dim, 2048);
    ck_assert_int_eq(c.n_heads, 32);
    ck_assert_int_eq(c.n_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.hidden_dim, 8192);
    ck_assert_int_eq(c.vocab_size, 128256);
    ck_assert_int_eq(c.max_pos, 131072);
    ck_assert_float_eq(c.norm_eps, 1e-5f);
    ck_assert_float_eq(c.rope_theta, 500000.0f);
    ck_assert_int_eq(c.rope_llama3, 1);
    ck_assert_float_eq(c.rope_factor, 8.0f);
    ck_assert_float_eq(c.rope_low_freq_factor, 1.0f);
    ck_assert_float_eq(c.rope_high_freq_factor, 4.0f);
    ck_assert_int_eq(c.rope_orig_max_pos, 8192);
    ck_assert_int_eq(c.tied, 0);
    ck_assert_int_eq(c.bos_id, 128000);
    ck_assert_int_eq(c.n_eos, 3);
    ck_assert_int_eq(c.eos_ids[0], 128001);
    ck_assert_int_eq(c.eos_ids[1], 128008);
    ck_assert_int_eq(c.eos_ids[2], 128009);
}
END_TEST

START_TEST(config_variants) {
    ModelConfig c = parse_ok(config_with("eos_token_id", "128009"));
    ck_assert_int_eq(c.n_eos, 1);
    ck_assert_int_eq(c.eos_ids[0], 128009);
    c = parse_ok(config_with("bos_token_id", "[128000]"));
    ck_assert_int_eq(c.bos_id, 128000);
    c = parse_ok(config_with("bos_token_id", NULL));
    ck_assert_int_eq(c.bos_id, -1);
    c = parse_ok(config_with("eos_token_id", NULL));
    ck_assert_int_eq(c.n_eos, 0);
    c = parse_ok(config_with("head_dim", NULL));
    ck_assert_int_eq(c.head_dim, 2048 / 32);
    c = parse_ok(config_with("num_key_value_heads", NULL));
    ck_assert_int_eq(c.n_kv_heads, 32);
    c = parse_ok(config_with("rope_scaling", "null"));
    ck_assert_int_eq(c.rope_llama3, 0);
    c = parse_ok(config_with("rope_scaling", "{\"type\": \"llama3\", \"factor\": 32, \"low_freq_factor\": 1,"
                                             " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}"));
    ck_assert_int_eq(c.rope_llama3, 1);
    ck_assert_float_eq(c.rope_factor, 32.0f);
    c = parse_ok(config_with("tie_word_embeddings", "true"));
    ck_assert_int_eq(c.tied, 1);
    c = parse_ok(config_with("tie_word_embeddings", NULL));
    ck_assert_int_eq(c.tied, 0);
    c = parse_ok(config_with("architectures", "[\"Other\", \"LlamaForCausalLM\"]"));
    ck_assert_int_eq(c.dim, 2048);
}
END_TEST

START_TEST(config_refusals) {
    expect_refused(config_with("architectures", "[\"MistralForCausalLM\"]"), "architectures");
    expect_refused(config_with("architectures", NULL), "architectures");
    expect_refused(config_with("model_type", "\"mistral\""), "model_type");
    expect_refused(config_with("rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4}"), "rope_type");
    expect_refused(config_with("rope_scaling", "{\"factor\": 4}"), "rope_type");
    expect_refused(config_with("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8}"), "low_freq_factor");
    expect_refused(config_with("rope_scaling", "7"), "rope_scaling");
    expect_refused(config_with("hidden_act", "\"gelu\""), "hidden_act");
    expect_refused(config_with("attention_bias", "true"), "attention_bias");
}
END_TEST

START_TEST(config_bad_numbers) {
    expect_refused(config_with("hidden_size", "0"), "hidden_size");
    expect_refused(config_with("hidden_size", "-2048"), "hidden_size");
    expect_refused(config_with("hidden_size", "\"2048\""), "hidden_size");
    expect_refused(config_with("hidden_size", "2048.5"), "hidden_size");
    expect_refused(config_with("hidden_size", NULL), "hidden_size");
    expect_refused(config_with("num_key_value_heads", "5"), "num_key_value_heads");
    expect_refused(config_with("num_key_value_heads", "64"), "num_key_value_heads");
    expect_refused(config_with("head_dim", "63"), "head_dim");
    expect_refused(config_with("vocab_size", "10000000000"), "vocab_size");
    expect_refused(config_with("num_hidden_layers", "100000"), "num_hidden_layers");
    expect_refused(config_with("intermediate_size", "0"), "intermediate_size");
    expect_refused(config_with("max_position_embeddings", NULL), "max_position_embeddings");
    expect_refused(config_with("rms_norm_eps", "-1e-5"), "rms_norm_eps");
    expect_refused(config_with("rope_theta", "0"), "rope_theta");
    /* positive as a double, 0 as the float the model uses (fuzzing found it):
     * an eps of 0 makes RMSNorm of a zero row NaN, a theta of 0 every RoPE angle */
    expect_refused(config_with("rms_norm_eps", "1e-50"), "rms_norm_eps");
    expect_refused(config_with("rope_theta", "1e-46"), "rope_theta");
    expect_refused(config_with("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 1e-300, \"low_freq_factor\": 1,"
                                              " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}"),
                   "rope_scaling.factor");
    expect_refused(config_with("eos_token_id", "[1, 200000]"), "eos_token_id");
    expect_refused(config_with("eos_token_id", "[1,2,3,4,5,6,7,8,9]"), "eos_token_id");
    expect_refused(config_with("eos_token_id", "\"x\""), "eos_token_id");
    expect_refused(config_with("bos_token_id", "-1"), "bos_token_id");
    expect_refused(config_with("bos_token_id", "[]"), "bos_token_id");
    expect_refused(config_with("tie_word_embeddings", "\"yes\""), "tie_word_embeddings");
    /* no head_dim and hidden_size not divisible by the heads */
    json_t *root = json_loads(REAL_CONFIG, 0, NULL);
    json_object_del(root, "head_dim");
    json_object_set_new(root, "hidden_size", json_integer(2050));
    json_dump_file(root, cfg_path, 0);
    json_decref(root);
    expect_refused(cfg_path, "hidden_size");
}
END_TEST

START_TEST(config_bad_files) {
    char path[512];
    snprintf(path, sizeof path, "%s/none.json", check_tmpdir);
    expect_refused(path, "cannot open");
    FILE *f = fopen(path, "w");
    fputs("{\"architectures\": [", f);
    fclose(f);
    expect_refused(path, "JSON");
    f = fopen(path, "w");
    fputs("[1]", f);
    fclose(f);
    expect_refused(path, "object");
}
END_TEST

/* ---- fixtures through the loader ------------------------------------ */

static FixtureSpec small_spec(StDtype dt, int shards, int tied, uint64_t seed) {
    FixtureSpec sp;
    char err[256];
    ck_assert_int_eq(fixture_preset("tiny", &sp, err, sizeof err), 0);
    ModelConfig *c = &sp.cfg;
    c->vocab_size = 300; c->dim = 24; c->n_heads = 3; c->n_kv_heads = 1; c->head_dim = 8;
    c->hidden_dim = 40; c->n_layers = 2; c->bos_id = 0; c->n_eos = 1; c->eos_ids[0] = 299;
    c->tied = tied;
    sp.dtype = dt;
    sp.shards = shards;
    sp.seed = seed;
    return sp;
}

static const char *write_fixture(const char *sub, const FixtureSpec *sp) {
    static char dir[512];
    char err[512];
    snprintf(dir, sizeof dir, "%s/%s", check_tmpdir, sub);
    ck_assert_msg(fixture_write(dir, sp, err, sizeof err) == 0, "%s", err);
    return dir;
}

/* Test-side reading of raw tensor bytes, independent of safetensors.c. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    ck_assert_int_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

typedef struct {
    unsigned char *bytes;
    size_t len, data_start;
    json_t *header;
} RawFile;

static RawFile raw_open(const char *path) {
    RawFile r;
    r.bytes = slurp(path, &r.len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | r.bytes[i];
    r.data_start = 8 + (size_t)n;
    r.header = json_loadb((const char *)r.bytes + 8, (size_t)n, 0, NULL);
    ck_assert_ptr_nonnull(r.header);
    return r;
}

static void raw_close(RawFile *r) {
    json_decref(r->header);
    free(r->bytes);
}

static float decode(const unsigned char *p, const char *dtype) {
    if (!strcmp(dtype, "F32")) { float f; memcpy(&f, p, 4); return f; }
    unsigned h = p[0] | (unsigned)p[1] << 8;
    if (!strcmp(dtype, "BF16")) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
    ck_assert_str_eq(dtype, "F16");
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? INFINITY : ldexpf((float)(m + 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

/* Compares tensor `name` in raw file r element by element with dst. */
static void compare_tensor(RawFile *r, const char *name, const float *dst, uint64_t seed, const char *dtype) {
    json_t *t = json_object_get(r->header, name);
    ck_assert_msg(t != NULL, "tensor %s not in header", name);
    ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), dtype);
    json_t *shape = json_object_get(t, "shape");
    int ndim = (int)json_array_size(shape);
    size_t n = 1, cols = (size_t)json_integer_value(json_array_get(shape, ndim - 1));
    for (int i = 0; i < ndim; i++) n *= (size_t)json_integer_value(json_array_get(shape, i));
    size_t begin = (size_t)json_integer_value(json_array_get(json_object_get(t, "data_offsets"), 0));
    size_t esz = strcmp(dtype, "F32") ? 2 : 4;
    float tol = !strcmp(dtype, "F32") ? 0 : !strcmp(dtype, "F16") ? ldexpf(1, -11) : ldexpf(1, -8);
    for (size_t i = 0; i < n; i++) {
        float want = decode(r->bytes + r->data_start + begin + i * esz, dtype);
        if (memcmp(&want, &dst[i], 4) != 0) ck_abort_msg("%s[%zu]: loaded %g, file has %g", name, i, dst[i], want);
        float gen = fixture_value(seed, name, ndim, (int64_t)cols, i);
        /* f16 subnormals (below 2^-14) have an absolute step of 2^-24 */
        float abs_tol = esz == 2 && !strcmp(dtype, "F16") ? ldexpf(1, -25) : 0;
        if (!(fabsf(gen - want) <= tol * fabsf(gen) + abs_tol))
            ck_abort_msg("%s[%zu]: file %g vs generator %g", name, i, want, gen);
    }
}

/* Finds which file holds `name` (sharded or not) and compares it. */
static void check_one(const char *dir, const char *name, const float *dst, uint64_t seed, const char *dtype) {
    char path[1024], idx[1024];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    json_t *index = json_load_file(idx, 0, NULL);
    if (index) {
        const char *file = json_string_value(json_object_get(json_object_get(index, "weight_map"), name));
        ck_assert_msg(file != NULL, "%s not in the index", name);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        json_decref(index);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
    }
    RawFile r = raw_open(path);
    compare_tensor(&r, name, dst, seed, dtype);
    raw_close(&r);
}

/* Every tensor of the layout, at its place in the fused matrices. */
static void check_all(const char *dir, const Model *m, uint64_t seed, const char *dtype) {
    const ModelConfig *c = &m->cfg;
    char nm[128];
    size_t q = (size_t)c->n_heads * c->head_dim, kv = (size_t)c->n_kv_heads * c->head_dim, d = (size_t)c->dim;
    check_one(dir, "model.embed_tokens.weight", m->w.embed.f32, seed, dtype);
    check_one(dir, "model.norm.weight", m->w.final_norm, seed, dtype);
    if (c->tied) ck_assert_ptr_eq(m->w.lm_head.f32, m->w.embed.f32);
    else check_one(dir, "lm_head.weight", m->w.lm_head.f32, seed, dtype);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->w.layers[l];
#define C(s, p) (snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, s), check_one(dir, nm, p, seed, dtype))
        C("input_layernorm", L->attn_norm);
        C("post_attention_layernorm", L->mlp_norm);
        C("self_attn.q_proj", L->wqkv.f32);
        C("self_attn.k_proj", L->wqkv.f32 + q * d);
        C("self_attn.v_proj", L->wqkv.f32 + (q + kv) * d);
        C("self_attn.o_proj", L->wo.f32);
        C("mlp.gate_proj", L->w13.f32);
        C("mlp.up_proj", L->w13.f32 + (size_t)c->hidden_dim * d);
        C("mlp.down_proj", L->w2.f32);
#undef C
    }
}

static Model *load_ok(const char *dir) {
    char err[1024];
    Model *m = model_load(dir, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    return m;
}

static const StDtype DTYPES[3] = {ST_BF16, ST_F16, ST_F32};
static const char *DTNAMES[3] = {"BF16", "F16", "F32"};

/* m's matrix against the f32 model's: bf16 = the f32 value rounded to bf16
 * (bit-exact); int8 = within half a quantization step, scale = max|row|/127. */
static void same_matrix(const WeightMatrix *got, const WeightMatrix *f32, const char *what) {
    ck_assert_int_eq(got->rows, f32->rows);
    ck_assert_int_eq(got->cols, f32->cols);
    float *row = malloc(sizeof(float) * (size_t)got->cols);
    int8_t *q = malloc((size_t)got->cols);
    int mlp = !strcmp(what, "w13") || !strcmp(what, "w2");
    if (got->prec == PREC_INT8) ck_assert_int_eq(got->lo_bits, mlp ? WM_I8_BITS_MLP : WM_I8_BITS_OTHER);
    int words = got->prec == PREC_INT8 ? wm_lo_words(got->cols, got->lo_bits) : 1;
    uint32_t *lo = malloc(sizeof(uint32_t) * (size_t)words);
    float vmax = (float)((128 << got->lo_bits) - 1);
    for (int r = 0; r < got->rows; r++) {
        wm_row(got, r, row);
        const float *want = f32->f32 + (size_t)r * f32->cols;
        float amax = 0;
        for (int k = 0; k < got->cols; k++) amax = fabsf(want[k]) > amax ? fabsf(want[k]) : amax;
        for (int k = 0; k < got->cols; k++) {
            /* ck_assert reports every pass to the parent: only failures here */
            if (got->prec == PREC_BF16 && row[k] != bf16_to_f32(f32_to_bf16(want[k])))
                ck_abort_msg("%s [%d,%d]: %g vs %g", what, r, k, row[k], want[k]);
            if (got->prec == PREC_INT8 && !(fabsf(row[k] - want[k]) <= amax / (2 * vmax) * 1.001f + 1e-12f))
                ck_abort_msg("%s [%d,%d]: %g vs %g (row max %g)", what, r, k, row[k], want[k], amax);
        }
        if (got->prec == PREC_INT8) {
            ck_assert_float_eq_tol(got->scale[r], amax / vmax, amax * 1e-6f);
            /* and exactly what the quantizer makes of the f32 row: the
             * loader's reading, chunking and fusing lose or move nothing */
            float scale = wm_quantize_row(want, got->cols, got->lo_bits, q, lo);
            ck_assert_msg(memcmp(q, got->q + (size_t)r * got->cols, (size_t)got->cols) == 0 &&
                          memcmp(lo, got->lo + (size_t)r * words, sizeof(uint32_t) * (size_t)words) == 0 &&
                          scale == got->scale[r], "%s row %d: not the row's quantization", what, r);
        }
    }
    free(row);
    free(q);
    free(lo);
}

/* Loads dir in p and in f32 and compares every matrix (same_matrix);
 * sized: the stored bytes are a fraction of f32's (not with 2-wide rows,
 * whose int8 scale and sum outweigh the values). */
static void stored_matches_f32_sized(const char *dir, Precision p, int tied, int sized) {
    char err[1024];
    Model *m = model_load_precision(dir, p, err, sizeof err), *ref = load_ok(dir);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(m->precision, p);
    ck_assert_ptr_nonnull(m->kernels);
    if (sized) ck_assert_uint_lt(m->weight_bytes, ref->weight_bytes / (p == PREC_BF16 ? 1.9 : 2.5)); /* int8: + a scale and 1-2 words of low bits per 24-wide row */
    same_matrix(&m->w.embed, &ref->w.embed, "embed");
    if (tied) ck_assert(m->w.lm_head.bf16 == m->w.embed.bf16 && m->w.lm_head.q == m->w.embed.q);
    else same_matrix(&m->w.lm_head, &ref->w.lm_head, "lm_head");
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const LayerWeights *a = &m->w.layers[l], *b = &ref->w.layers[l];
        same_matrix(&a->wqkv, &b->wqkv, "wqkv");
        same_matrix(&a->wo, &b->wo, "wo");
        same_matrix(&a->w13, &b->w13, "w13");
        same_matrix(&a->w2, &b->w2, "w2");
        ck_assert_mem_eq(a->attn_norm, b->attn_norm, sizeof(float) * (size_t)m->cfg.dim);
        ck_assert_mem_eq(a->mlp_norm, b->mlp_norm, sizeof(float) * (size_t)m->cfg.dim);
    }
    ck_assert_mem_eq(m->w.final_norm, ref->w.final_norm, sizeof(float) * (size_t)m->cfg.dim);
    model_free(m);
    model_free(ref);
}

static void stored_matches_f32(const char *dir, Precision p, int tied) {
    stored_matches_f32_sized(dir, p, tied, 1);
}

/* _i: dtype index (0..2) x stored form (bf16, int8) x tied (0, 1) */
START_TEST(round_trip_stored) {
    int dt = _i % 3, tied = _i / 6;
    Precision p = (_i / 3) % 2 ? PREC_INT8 : PREC_BF16;
    FixtureSpec sp = small_spec(DTYPES[dt], 1, tied, 7 + (uint64_t)_i);
    stored_matches_f32(write_fixture("rs", &sp), p, tied);
}
END_TEST

/* Tensors larger than the loader's unit of work (256K elements), with row
 * lengths that do not divide it and shards: f32 bit for bit against the file
 * (check_all), bf16 and int8 exactly against the f32 load. _i: dtype index. */
START_TEST(round_trip_multi_chunk) {
    FixtureSpec sp = small_spec(DTYPES[_i], _i == 1 ? 3 : 1, 0, 99 + (uint64_t)_i);
    ModelConfig *c = &sp.cfg;
    c->vocab_size = 1000; c->dim = 264; c->n_heads = 3; c->n_kv_heads = 1; c->head_dim = 88;
    c->hidden_dim = 1003; c->n_layers = 1; c->eos_ids[0] = 999;
    const char *dir = write_fixture("mc", &sp);
    Model *m = load_ok(dir);
    check_all(dir, m, sp.seed, DTNAMES[_i]);
    model_free(m);
    stored_matches_f32(dir, PREC_BF16, 0);
    stored_matches_f32(dir, PREC_INT8, 0);
}
END_TEST

/* A row longer than the loader's unit of work (down_proj [2, 262147]): one
 * int8 task per row, several bf16/f32 tasks per row. */
START_TEST(round_trip_long_rows) {
    FixtureSpec sp = small_spec(ST_BF16, 1, 1, 5);
    ModelConfig *c = &sp.cfg;
    c->vocab_size = 300; c->dim = 2; c->n_heads = 1; c->n_kv_heads = 1; c->head_dim = 2;
    c->hidden_dim = 262147; c->n_layers = 1;
    const char *dir = write_fixture("lr", &sp);
    Model *m = load_ok(dir);
    check_all(dir, m, sp.seed, "BF16");
    model_free(m);
    stored_matches_f32_sized(dir, PREC_BF16, 1, 0);
    stored_matches_f32_sized(dir, PREC_INT8, 1, 0);
}
END_TEST

/* _i: dtype index (0..2) x shards (1, 3) x tied (0, 1) */
START_TEST(round_trip) {
    int dt = _i % 3, shards = (_i / 3) % 2 ? 3 : 1, tied = _i / 6;
    FixtureSpec sp = small_spec(DTYPES[dt], shards, tied, 42 + (uint64_t)_i);
    const char *dir = write_fixture("rt", &sp);
    Model *m = load_ok(dir);
    ck_assert_int_eq(m->cfg.tied, tied);
    ck_assert_int_eq(m->cfg.dim, 24);
    ck_assert_int_eq(m->cfg.vocab_size, 300);
    check_all(dir, m, sp.seed, DTNAMES[dt]);
    ck_assert_str_eq(m->name, "rt");
    ck_assert_uint_eq(strlen(m->revision), 16);
    ck_assert_uint_ge(m->weight_bytes, (size_t)(tied ? 1 : 2) * 300 * 24 * 4);
    ck_assert_int_gt(m->peak_rss_kb, 0);
    ck_assert(m->load_seconds >= 0);
    model_free(m);
}
END_TEST

START_TEST(dtypes_agree_and_seeds_differ) {
    FixtureSpec a = small_spec(ST_F32, 1, 0, 7), b = small_spec(ST_BF16, 3, 0, 7), c = small_spec(ST_F32, 1, 0, 8);
    Model *ma = load_ok(write_fixture("a", &a));
    Model *mb = load_ok(write_fixture("b", &b));
    Model *mc = load_ok(write_fixture("c", &c));
    size_t n = (size_t)(3 + 2) * 8 * 24;   /* the whole fused wqkv of layer 1 */
    int rounded = 0, same_seed_c = 0;
    for (size_t i = 0; i < n; i++) {
        float x = ma->w.layers[1].wqkv.f32[i], y = mb->w.layers[1].wqkv.f32[i], z = mc->w.layers[1].wqkv.f32[i];
        ck_assert_msg(fabsf(x - y) <= ldexpf(1, -8) * fabsf(x), "[%zu] f32 %g vs bf16 %g", i, x, y);
        rounded += x != y;
        same_seed_c += x == z;
    }
    ck_assert_int_gt(rounded, (int)n / 2);     /* bf16 really rounded */
    ck_assert_int_lt(same_seed_c, 5);          /* another seed, other weights */
    ck_assert_str_ne(ma->revision, mb->revision);
    ck_assert_str_ne(ma->revision, mc->revision);
    model_free(ma); model_free(mb); model_free(mc);
}
END_TEST

START_TEST(tiny_preset_loads) {
    FixtureSpec sp;
    char err[256];
    ck_assert_int_eq(fixture_preset("tiny", &sp, err, sizeof err), 0);
    Model *m = load_ok(write_fixture("tiny", &sp));
    ck_assert_int_eq(m->cfg.vocab_size, 128256);
    ck_assert_int_eq(m->cfg.bos_id, 128000);
    ck_assert_int_eq(m->cfg.n_eos, 3);
    ck_assert_int_eq(m->cfg.tied, 0);
    ck_assert_int_eq(m->cfg.rope_llama3, 1);
    ck_assert_ptr_ne(m->w.lm_head.f32, m->w.embed.f32);
    /* weights are not degenerate: embedding rows have spread */
    double ss = 0;
    for (int i = 0; i < m->cfg.dim * 100; i++) ss += (double)m->w.embed.f32[i] * m->w.embed.f32[i];
    ck_assert(ss / (m->cfg.dim * 100) > 0.5 / m->cfg.dim);
    model_free(m);
    ck_assert_int_eq(fixture_preset("nope", &sp, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "nope"));
}
END_TEST

/* ---- layout errors --------------------------------------------------- */

/* Rewrites dir/model.safetensors with its header changed by edit(); the data
 * area is kept, so offsets stay valid. */
static void rewrite_header(const char *dir, void (*edit)(json_t *)) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    RawFile r = raw_open(path);
    edit(r.header);
    char *h = json_dumps(r.header, JSON_COMPACT);
    size_t hl = strlen(h);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 8; i++) fputc((int)((uint64_t)hl >> (8 * i)) & 0xff, f);
    fwrite(h, 1, hl, f);
    fwrite(r.bytes + r.data_start, 1, r.len - r.data_start, f);
    ck_assert_int_eq(fclose(f), 0);
    free(h);
    raw_close(&r);
}

static void drop_up(json_t *h) { json_object_del(h, "model.layers.1.mlp.up_proj.weight"); }
static void drop_lm_head(json_t *h) { json_object_del(h, "lm_head.weight"); }
static void add_inv_freq(json_t *h) {
    json_object_set_new(h, "model.layers.0.self_attn.rotary_emb.inv_freq",
                        json_pack("{s:s, s:[i], s:[i,i]}", "dtype", "F32", "shape", 0, "data_offsets", 0, 0));
}
static void reshape_q(json_t *h) {
    json_object_set_new(json_object_get(h, "model.layers.0.self_attn.q_proj.weight"), "shape", json_pack("[i,i]", 12, 48));
}
static void reshape_norm(json_t *h) {
    json_object_set_new(json_object_get(h, "model.norm.weight"), "shape", json_pack("[i,i]", 2, 12));
}

static void expect_load_fail(const char *dir, const char *w1, const char *w2) {
    char err[1024] = "";
    Model *m = model_load(dir, err, sizeof err);
    ck_assert_msg(m == NULL, "loaded a bad checkpoint");
    ck_assert_msg(strstr(err, dir), "error does not name the file: %s", err);
    if (w1) ck_assert_msg(strstr(err, w1), "error lacks \"%s\": %s", w1, err);
    if (w2) ck_assert_msg(strstr(err, w2), "error lacks \"%s\": %s", w2, err);
}

START_TEST(layout_errors) {
    FixtureSpec sp = small_spec(ST_BF16, 1, 0, 3);
    const char *dir = write_fixture("bad", &sp);
    rewrite_header(dir, drop_up);
    expect_load_fail(dir, "missing tensor", "model.layers.1.mlp.up_proj.weight");
    dir = write_fixture("bad", &sp);
    rewrite_header(dir, add_inv_freq);
    expect_load_fail(dir, "unexpected tensor", "rotary_emb.inv_freq");
    dir = write_fixture("bad", &sp);
    rewrite_header(dir, reshape_q);
    expect_load_fail(dir, "model.layers.0.self_attn.q_proj.weight", "[12, 48]");
    dir = write_fixture("bad", &sp);
    rewrite_header(dir, reshape_norm);
    expect_load_fail(dir, "model.norm.weight", "[24]");
    dir = write_fixture("bad", &sp);
    rewrite_header(dir, drop_lm_head);
    expect_load_fail(dir, "lm_head.weight", "tie_word_embeddings");
}
END_TEST

START_TEST(config_disagrees_with_weights) {
    FixtureSpec sp = small_spec(ST_BF16, 1, 0, 3);
    const char *dir = write_fixture("cfg", &sp);
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    sp.cfg.n_layers = 1;                 /* layer 1 tensors become unexpected */
    ck_assert_int_eq(fixture_write_config(path, &sp.cfg, err, sizeof err), 0);
    expect_load_fail(dir, "unexpected tensor", "model.layers.1.");
    sp.cfg.n_layers = 3;                 /* layer 2 tensors are missing */
    ck_assert_int_eq(fixture_write_config(path, &sp.cfg, err, sizeof err), 0);
    expect_load_fail(dir, "missing tensor", "model.layers.2.");
    sp.cfg.n_layers = 2;
    sp.cfg.hidden_dim = 48;
    ck_assert_int_eq(fixture_write_config(path, &sp.cfg, err, sizeof err), 0);
    expect_load_fail(dir, "mlp.", "48");
}
END_TEST

START_TEST(tied_config_ignores_lm_head) {
    /* untied weights on disk, config switched to tied: lm_head.weight is
     * accepted and ignored, the head is the embedding */
    FixtureSpec sp = small_spec(ST_F32, 1, 0, 5);
    const char *dir = write_fixture("tie", &sp);
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    sp.cfg.tied = 1;
    ck_assert_int_eq(fixture_write_config(path, &sp.cfg, err, sizeof err), 0);
    Model *m = load_ok(dir);
    ck_assert_ptr_eq(m->w.lm_head.f32, m->w.embed.f32);
    ck_assert_float_eq(m->w.lm_head.f32[7], fixture_value(5, "model.embed_tokens.weight", 2, 24, 7));
    model_free(m);
}
END_TEST

/* Byte flips in a fixture's header: model_load() must either load or fail
 * with a message, never crash (ASan run). */
START_TEST(header_fuzz) {
    FixtureSpec sp = small_spec(ST_BF16, 1, 0, 9);
    const char *dir = write_fixture("fz", &sp);
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t len;
    unsigned char *orig = slurp(path, &len), *buf = malloc(len);
    size_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | orig[i];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int it = 0; it < 400; it++) {
        memcpy(buf, orig, len);
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t pos = 8 + (size_t)(x >> 16) % hlen;
        buf[pos] = (unsigned char)"0123456789[]{},:\"-.ae"[(x >> 40) % 21];
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        Model *m = model_load(dir, err, sizeof err);
        if (m) model_free(m);
        else ck_assert_msg(strstr(err, dir), "error does not name the file: %s", err);
    }
    free(orig);
    free(buf);
}
END_TEST

START_TEST(missing_files) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/nothing", check_tmpdir);
    expect_load_fail(dir, "config.json", NULL);
    FixtureSpec sp = small_spec(ST_BF16, 1, 0, 3);
    const char *d = write_fixture("nost", &sp);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    ck_assert_int_eq(unlink(path), 0);
    expect_load_fail(d, "no model.safetensors", NULL);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loader");
    TCase *tc = check_case(s, "config", 0);
    check_tmpdir_case(tc);
    tcase_add_test(tc, real_config_parses);
    tcase_add_test(tc, config_variants);
    tcase_add_test(tc, config_refusals);
    tcase_add_test(tc, config_bad_numbers);
    tcase_add_test(tc, config_bad_files);
    TCase *rt = check_case(s, "round_trip", 0);
    check_tmpdir_case(rt);
    tcase_add_loop_test(rt, round_trip, 0, 12);
    tcase_add_loop_test(rt, round_trip_stored, 0, 12);
    tcase_add_loop_test(rt, round_trip_multi_chunk, 0, 3);
    tcase_add_test(rt, round_trip_long_rows);
    tcase_add_test(rt, dtypes_agree_and_seeds_differ);
    tcase_add_test(rt, tiny_preset_loads);
    tcase_add_test(rt, layout_errors);
    tcase_add_test(rt, config_disagrees_with_weights);
    tcase_add_test(rt, tied_config_ignores_lm_head);
    tcase_add_test(rt, missing_files);
    tcase_add_test(rt, header_fuzz);
    return check_run(s);
}
