/* fixture.c - deterministic random-weight checkpoints (see fixture.h).
 *
 * Values: key = splitmix64(seed ^ fnv1a(name)); element i takes the top 24
 * bits of splitmix64(key + (i + 1) * golden) as a uniform in [-1, 1). Being
 * counter-based, any element can be recomputed alone and chunks can be
 * generated in parallel. The safetensors header is built by hand (compact
 * JSON, "__metadata__" first, then tensors sorted by name with consecutive
 * offsets) so the byte layout is predictable; files are written to a .tmp
 * name and renamed so an interrupted run never leaves a valid-looking model.
 */
#include "errmsg.h"
#include "fixture.h"
#include "prompt_format.h"
#include <jansson.h>
#include "bf16.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char name[96];
    int ndim;
    int64_t rows, cols;     /* 1-D: rows elements, cols == rows for fixture_value */
    size_t nbytes, begin;   /* within its shard's data area */
    int shard;
} FTensor;

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static float value_at(uint64_t key, int ndim, int64_t cols, size_t i) {
    uint64_t r = splitmix64(key + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
    float u = (float)(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
    if (ndim == 1) return 1.0f + 0.1f * u;
    return u * sqrtf(3.0f / (float)(cols > 0 ? cols : 1));
}

float fixture_value(uint64_t seed, const char *name, int ndim, int64_t cols, size_t i) {
    return value_at(splitmix64(seed ^ fnv1a(name)), ndim, cols, i);
}

int fixture_preset(const char *name, FixtureSpec *spec, char *err, size_t errlen) {
    static const int eos[3] = {128001, 128008, 128009};
    memset(spec, 0, sizeof *spec);
    ModelConfig *c = &spec->cfg;
    spec->seed = 1;
    spec->dtype = ST_BF16;
    spec->shards = 1;
    c->vocab_size = 128256; c->max_pos = 131072; c->norm_eps = 1e-5f;
    c->rope_theta = 500000.0f; c->rope_llama3 = 1; c->rope_factor = 8.0f;
    c->rope_low_freq_factor = 1.0f; c->rope_high_freq_factor = 4.0f; c->rope_orig_max_pos = 8192;
    c->bos_id = 128000; c->n_eos = 3;
    memcpy(c->eos_ids, eos, sizeof eos);
    spec->prompt_format = PROMPT_FORMAT_LG3_1B;
    if (!strcmp(name, "tiny") || !strcmp(name, "tiny-8b")) {
        c->n_layers = 2; c->dim = 32; c->n_heads = 4; c->n_kv_heads = 2; c->head_dim = 8; c->hidden_dim = 64;
        if (!strcmp(name, "tiny-8b")) spec->prompt_format = PROMPT_FORMAT_LG3_8B;
    } else if (!strcmp(name, "llama-guard-3-1b")) {
        c->n_layers = 16; c->dim = 2048; c->n_heads = 32; c->n_kv_heads = 8; c->head_dim = 64; c->hidden_dim = 8192;
    } else if (!strcmp(name, "llama-guard-3-8b")) {
        c->n_layers = 32; c->dim = 4096; c->n_heads = 32; c->n_kv_heads = 8; c->head_dim = 128; c->hidden_dim = 14336;
        spec->prompt_format = PROMPT_FORMAT_LG3_8B;
    } else {
        return errmsg(err, errlen, "unknown preset \"%s\" (tiny, tiny-8b, llama-guard-3-1b, llama-guard-3-8b)", name);
    }
    return 0;
}

/* Shortest decimal that reads back as the same float, as a JSON number. */
static void fmt_float(char *buf, size_t len, float f) {
    if (f == floorf(f) && fabsf(f) < 1e15f) {   /* 500000.0 rather than 5e+05 */
        snprintf(buf, len, "%.1f", (double)f);
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, len, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    if (!strpbrk(buf, ".en")) strncat(buf, ".0", len - strlen(buf) - 1);
}

int fixture_write_tokenizer_config(const char *dir, PromptFormat fmt, int max_pos, char *err, size_t errlen) {
    const char *tpl = prompt_format_template(fmt);
    if (!tpl) return errmsg(err, errlen, "no chat template for prompt format %s", prompt_format_name(fmt));
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *root = json_pack("{s:s,s:s,s:s,s:b,s:I,s:s,s:s}", "bos_token", "<|begin_of_text|>",
                             "eos_token", "<|eot_id|>", "pad_token", "<|finetune_right_pad_id|>",
                             "clean_up_tokenization_spaces", 1, "model_max_length", (json_int_t)max_pos,
                             "tokenizer_class", "PreTrainedTokenizerFast", "chat_template", tpl);
    int rc = root && json_dump_file(root, path, JSON_INDENT(2) | JSON_ENSURE_ASCII) == 0 ? 0 : -1;
    json_decref(root);
    if (rc < 0) return errmsg(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

int fixture_write_config(const char *path, const ModelConfig *c, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) return errmsg(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    char eps[32], theta[32], fac[32], lo[32], hi[32];
    fmt_float(eps, sizeof eps, c->norm_eps);
    fmt_float(theta, sizeof theta, c->rope_theta);
    fmt_float(fac, sizeof fac, c->rope_factor);
    fmt_float(lo, sizeof lo, c->rope_low_freq_factor);
    fmt_float(hi, sizeof hi, c->rope_high_freq_factor);
    fprintf(f, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
               "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"hidden_act\": \"silu\",\n");
    if (c->bos_id >= 0) fprintf(f, "  \"bos_token_id\": %d,\n", c->bos_id);
    if (c->n_eos > 0) {
        fprintf(f, "  \"eos_token_id\": [");
        for (int i = 0; i < c->n_eos; i++) fprintf(f, "%s%d", i ? ", " : "", c->eos_ids[i]);
        fprintf(f, "],\n");
    }
    fprintf(f, "  \"head_dim\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
               "  \"max_position_embeddings\": %d,\n  \"num_attention_heads\": %d,\n"
               "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n  \"rms_norm_eps\": %s,\n",
            c->head_dim, c->dim, c->hidden_dim, c->max_pos, c->n_heads, c->n_layers, c->n_kv_heads, eps);
    if (c->rope_llama3)
        fprintf(f, "  \"rope_scaling\": {\n    \"factor\": %s,\n    \"high_freq_factor\": %s,\n"
                   "    \"low_freq_factor\": %s,\n    \"original_max_position_embeddings\": %d,\n"
                   "    \"rope_type\": \"llama3\"\n  },\n", fac, hi, lo, c->rope_orig_max_pos);
    else
        fprintf(f, "  \"rope_scaling\": null,\n");
    fprintf(f, "  \"rope_theta\": %s,\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"bfloat16\",\n"
               "  \"vocab_size\": %d\n}\n", theta, c->tied ? "true" : "false", c->vocab_size);
    if (fclose(f)) return errmsg(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

static void add(FTensor *t, int *n, const char *name, int64_t rows, int64_t cols, size_t esz) {
    FTensor *x = &t[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = cols ? 2 : 1;
    x->rows = rows;
    x->cols = cols ? cols : rows;
    x->nbytes = (size_t)rows * (size_t)(cols ? cols : 1) * esz;
}

static int by_name(const void *a, const void *b) { return strcmp(((const FTensor *)a)->name, ((const FTensor *)b)->name); }

/* The Llama tensor list for cfg, sorted by name. */
static int tensor_list(const ModelConfig *c, size_t esz, FTensor *t) {
    int n = 0;
    char nm[96];
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    add(t, &n, "model.embed_tokens.weight", c->vocab_size, c->dim, esz);
    add(t, &n, "model.norm.weight", c->dim, 0, esz);
    if (!c->tied) add(t, &n, "lm_head.weight", c->vocab_size, c->dim, esz);
    for (int l = 0; l < c->n_layers; l++) {
#define A(s, r, k) (snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, s), add(t, &n, nm, r, k, esz))
        A("input_layernorm", c->dim, 0);
        A("post_attention_layernorm", c->dim, 0);
        A("self_attn.q_proj", q, c->dim);
        A("self_attn.k_proj", kv, c->dim);
        A("self_attn.v_proj", kv, c->dim);
        A("self_attn.o_proj", c->dim, q);
        A("mlp.gate_proj", c->hidden_dim, c->dim);
        A("mlp.up_proj", c->hidden_dim, c->dim);
        A("mlp.down_proj", c->dim, c->hidden_dim);
#undef A
    }
    qsort(t, (size_t)n, sizeof *t, by_name);
    return n;
}

/* Compact header JSON for tensors [lo, hi), offsets assigned consecutively,
 * padded with spaces to a multiple of 8. Returns a malloc'd string. */
static char *make_header(FTensor *t, int lo, int hi, StDtype dt, size_t *len) {
    size_t cap = 64 + (size_t)(hi - lo) * 256, n = 0, off = 0;
    char *h = malloc(cap);
    if (!h) return NULL;
    n += (size_t)snprintf(h + n, cap - n, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = lo; i < hi; i++) {
        t[i].begin = off;
        n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"%s\",\"shape\":", t[i].name, st_dtype_name(dt));
        if (t[i].ndim == 1) n += (size_t)snprintf(h + n, cap - n, "[%lld]", (long long)t[i].rows);
        else n += (size_t)snprintf(h + n, cap - n, "[%lld,%lld]", (long long)t[i].rows, (long long)t[i].cols);
        n += (size_t)snprintf(h + n, cap - n, ",\"data_offsets\":[%zu,%zu]}", off, off + t[i].nbytes);
        off += t[i].nbytes;
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    while (n % 8) h[n++] = ' ';
    h[n] = 0;
    *len = n;
    return h;
}

static void encode(const float *src, size_t n, StDtype dt, unsigned char *dst) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        if (dt == ST_F32) { memcpy(dst + 4 * i, &src[i], 4); continue; }
        h = dt == ST_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        memcpy(dst + 2 * i, &h, 2);
    }
}

enum { CHUNK = 1 << 20 };

/* Streams one tensor's data in CHUNK-element pieces. */
static int write_data(FILE *f, const FTensor *t, const FixtureSpec *sp, float *fbuf, unsigned char *bbuf) {
    uint64_t key = splitmix64(sp->seed ^ fnv1a(t->name));
    size_t esz = st_dtype_size(sp->dtype), total = t->nbytes / esz;
    for (size_t first = 0; first < total; first += CHUNK) {
        size_t len = total - first < CHUNK ? total - first : CHUNK;
        #pragma omp parallel for schedule(static)
        for (long i = 0; i < (long)len; i++) fbuf[i] = value_at(key, t->ndim, t->cols, first + (size_t)i);
        encode(fbuf, len, sp->dtype, bbuf);
        if (fwrite(bbuf, esz, len, f) != len) return -1;
    }
    return 0;
}

static int write_shard(const char *path, FTensor *t, int lo, int hi, const FixtureSpec *sp, char *err, size_t errlen) {
    size_t hlen;
    char tmp[4200];
    char *h = make_header(t, lo, hi, sp->dtype, &hlen);
    float *fbuf = malloc(CHUNK * sizeof *fbuf);
    unsigned char *bbuf = malloc(CHUNK * 4);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = h && fbuf && bbuf ? fopen(tmp, "wb") : NULL;
    int rc = -1;
    if (!f) { errmsg(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); goto out; }
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int bad = fwrite(le, 1, 8, f) != 8 || fwrite(h, 1, hlen, f) != hlen;
    for (int i = lo; i < hi && !bad && !sp->header_only; i++) bad = write_data(f, &t[i], sp, fbuf, bbuf);
    if (fclose(f) || bad) { errmsg(err, errlen, "%s: write failed: %s", tmp, strerror(errno)); unlink(tmp); goto out; }
    if (rename(tmp, path)) { errmsg(err, errlen, "%s: rename failed: %s", path, strerror(errno)); goto out; }
    rc = 0;
out:
    free(h); free(fbuf); free(bbuf);
    return rc;
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

static int write_index(const char *dir, const FTensor *t, int n, int shards, const char *sfx, char *err, size_t errlen) {
    char path[4200];
    size_t total = 0;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return errmsg(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) total += t[i].nbytes;
    fprintf(f, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {\n", total);
    for (int i = 0; i < n; i++)
        fprintf(f, "    \"%s\": \"model-%05d-of-%05d.safetensors%s\"%s\n", t[i].name, t[i].shard + 1, shards, sfx,
                i + 1 < n ? "," : "");
    fprintf(f, "  }\n}\n");
    if (fclose(f)) return errmsg(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

/* Removes files a previous run with another layout may have left, so the
 * loader cannot pick up a stale index or single file. */
static void clear_old(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
}

static int write_all(const char *dir, FTensor *t, int n, const FixtureSpec *sp, char *err, size_t errlen) {
    char path[4200];
    const char *sfx = sp->header_only ? ".header" : "";
    if (sp->shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors%s", dir, sfx);
        return write_shard(path, t, 0, n, sp, err, errlen);
    }
    for (int s = 0; s < sp->shards; s++) {
        int lo = (int)((long)n * s / sp->shards), hi = (int)((long)n * (s + 1) / sp->shards);
        for (int i = lo; i < hi; i++) t[i].shard = s;
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors%s", dir, s + 1, sp->shards, sfx);
        if (write_shard(path, t, lo, hi, sp, err, errlen)) return -1;
    }
    return write_index(dir, t, n, sp->shards, sfx, err, errlen);
}

int fixture_write(const char *dir, const FixtureSpec *sp, char *err, size_t errlen) {
    char path[4200];
    ModelConfig cfg;
    if (strlen(dir) > 4000) return errmsg(err, errlen, "%s: path too long", dir);
    if (mkdir_p(dir)) return errmsg(err, errlen, "%s: cannot create directory: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/config.json", dir);
    /* round-trip through the real parser: the fixture is valid iff the loader says so */
    if (fixture_write_config(path, &sp->cfg, err, errlen) || model_config_load(path, &cfg, err, errlen)) return -1;
    FTensor *t = calloc((size_t)(3 + 9 * cfg.n_layers), sizeof *t);
    if (!t) return errmsg(err, errlen, "out of memory");
    int n = tensor_list(&cfg, st_dtype_size(sp->dtype), t);
    if (sp->shards < 1 || sp->shards > n) {
        free(t);
        return errmsg(err, errlen, "shard count %d must be between 1 and the tensor count %d", sp->shards, n);
    }
    if (!sp->header_only) clear_old(dir);
    int rc = write_all(dir, t, n, sp, err, errlen);
    free(t);
    return rc;
}
