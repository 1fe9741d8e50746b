/* config.c - parses a Hugging Face Llama config.json into ModelConfig.
 *
 * config.json is untrusted input: every number is type-checked and bounded so
 * that later size products (vocab * dim, layers * hidden * dim, ...) cannot
 * overflow a size_t, and shape relations (heads divisible by KV heads, even
 * head_dim for RoPE) are checked here once instead of in the forward pass.
 * Only the Llama architecture and the "llama3" (or "default") RoPE type are
 * accepted; anything else is refused with a message naming file and field.
 */
#include "model.h"
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
} Ctx;

static int fail(Ctx *c, const char *fmt, ...) {
    va_list ap;
    int n = snprintf(c->err, c->errlen, "%s: ", c->path);
    if (n < 0 || (size_t)n >= c->errlen) return -1;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reads integer field `key` into *out, bounded to [lo, hi]. If the field is
 * absent (or null) and def_ok, *out keeps its default. */
static int get_int(Ctx *c, json_t *o, const char *key, int *out, long lo, long hi, int def_ok) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def_ok) return 0;
        return fail(c, "missing field \"%s\"", key);
    }
    if (!json_is_integer(v)) return fail(c, "field \"%s\" must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(c, "field \"%s\" = %lld is out of range [%ld, %ld]", key, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

/* Reads a positive finite number (integer or real) below hi into *out. The
 * check is also made on the float that is kept: 1e-50 is positive as a double
 * but 0 as a float, and a zero eps or theta turns the forward pass into NaN. */
static int get_num(Ctx *c, json_t *o, const char *where, const char *key, float *out, double hi, int def_ok) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def_ok) return 0;
        return fail(c, "missing field \"%s%s\"", where, key);
    }
    if (!json_is_number(v)) return fail(c, "field \"%s%s\" must be a number", where, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x <= 0 || x > hi)
        return fail(c, "field \"%s%s\" = %g must be > 0 and <= %g", where, key, x, hi);
    if (!((float)x > 0))
        return fail(c, "field \"%s%s\" = %g is too small for a 32-bit float", where, key, x);
    *out = (float)x;
    return 0;
}

static int check_arch(Ctx *c, json_t *root) {
    json_t *a = json_object_get(root, "architectures");
    if (!json_is_array(a) || json_array_size(a) == 0)
        return fail(c, "field \"architectures\" must be a non-empty list");
    int found = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
        if (json_is_string(v) && !strcmp(json_string_value(v), "LlamaForCausalLM")) found = 1;
    if (!found) {
        json_t *first = json_array_get(a, 0);
        return fail(c, "field \"architectures\": unsupported architecture \"%.64s\" (need LlamaForCausalLM)",
                    json_is_string(first) ? json_string_value(first) : "?");
    }
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "llama")))
        return fail(c, "field \"model_type\" must be \"llama\"");
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return fail(c, "field \"hidden_act\": only \"silu\" is supported");
    /* bias tensors are not part of the layout we load */
    const char *flags[] = {"attention_bias", "mlp_bias"};
    for (int k = 0; k < 2; k++) {
        json_t *b = json_object_get(root, flags[k]);
        if (b && !json_is_false(b)) return fail(c, "field \"%s\": only false is supported", flags[k]);
    }
    return 0;
}

static int parse_rope(Ctx *c, json_t *root, ModelConfig *cfg) {
    if (get_num(c, root, "", "rope_theta", &cfg->rope_theta, 1e12, 0)) return -1;
    json_t *rs = json_object_get(root, "rope_scaling");
    cfg->rope_llama3 = 0;
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) return fail(c, "field \"rope_scaling\" must be an object or null");
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    if (!json_is_string(t)) return fail(c, "field \"rope_scaling.rope_type\" missing or not a string");
    const char *type = json_string_value(t);
    if (!strcmp(type, "default")) return 0;
    if (strcmp(type, "llama3"))
        return fail(c, "field \"rope_scaling.rope_type\": unsupported rope type \"%.64s\" (need llama3)", type);
    cfg->rope_llama3 = 1;
    if (get_num(c, rs, "rope_scaling.", "factor", &cfg->rope_factor, 1e6, 0) ||
        get_num(c, rs, "rope_scaling.", "low_freq_factor", &cfg->rope_low_freq_factor, 1e6, 0) ||
        get_num(c, rs, "rope_scaling.", "high_freq_factor", &cfg->rope_high_freq_factor, 1e6, 0) ||
        get_int(c, rs, "original_max_position_embeddings", &cfg->rope_orig_max_pos, 1, 1 << 24, 0))
        return -1;
    if (cfg->rope_high_freq_factor <= cfg->rope_low_freq_factor)
        return fail(c, "field \"rope_scaling.high_freq_factor\" must exceed low_freq_factor");
    return 0;
}

static int parse_tokens(Ctx *c, json_t *root, ModelConfig *cfg) {
    cfg->bos_id = -1;
    cfg->n_eos = 0;
    json_t *b = json_object_get(root, "bos_token_id");
    if (json_is_array(b)) {   /* rare, but allowed like eos: the first id is the one we prepend */
        json_t *first = json_array_get(b, 0);
        if (!json_is_integer(first) || json_integer_value(first) < 0 || json_integer_value(first) >= cfg->vocab_size)
            return fail(c, "field \"bos_token_id\"[0] must be an integer in [0, vocab_size)");
        cfg->bos_id = (int)json_integer_value(first);
    } else if (get_int(c, root, "bos_token_id", &cfg->bos_id, 0, cfg->vocab_size - 1, 1)) {
        return -1;
    }
    json_t *e = json_object_get(root, "eos_token_id");
    if (!e || json_is_null(e)) return 0;
    if (json_is_integer(e))
        return get_int(c, root, "eos_token_id", &cfg->eos_ids[cfg->n_eos++], 0, cfg->vocab_size - 1, 0);
    if (!json_is_array(e)) return fail(c, "field \"eos_token_id\" must be an integer or a list");
    if (json_array_size(e) > MODEL_MAX_EOS)
        return fail(c, "field \"eos_token_id\" has more than %d entries", MODEL_MAX_EOS);
    size_t i;
    json_t *v;
    json_array_foreach(e, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= cfg->vocab_size)
            return fail(c, "field \"eos_token_id\"[%zu] must be an integer in [0, vocab_size)", i);
        cfg->eos_ids[cfg->n_eos++] = (int)json_integer_value(v);
    }
    return 0;
}

static int parse_shape(Ctx *c, json_t *root, ModelConfig *cfg) {
    if (get_int(c, root, "num_hidden_layers", &cfg->n_layers, 1, 1024, 0) ||
        get_int(c, root, "hidden_size", &cfg->dim, 1, 65536, 0) ||
        get_int(c, root, "num_attention_heads", &cfg->n_heads, 1, 1024, 0) ||
        get_int(c, root, "intermediate_size", &cfg->hidden_dim, 1, 1 << 20, 0) ||
        get_int(c, root, "vocab_size", &cfg->vocab_size, 1, 1 << 22, 0) ||
        get_int(c, root, "max_position_embeddings", &cfg->max_pos, 1, 1 << 24, 0))
        return -1;
    cfg->n_kv_heads = cfg->n_heads;
    if (get_int(c, root, "num_key_value_heads", &cfg->n_kv_heads, 1, cfg->n_heads, 1)) return -1;
    if (cfg->n_heads % cfg->n_kv_heads)
        return fail(c, "field \"num_key_value_heads\" = %d does not divide num_attention_heads = %d",
                    cfg->n_kv_heads, cfg->n_heads);
    cfg->head_dim = 0;
    if (get_int(c, root, "head_dim", &cfg->head_dim, 1, 1024, 1)) return -1;
    if (cfg->head_dim == 0) {
        if (cfg->dim % cfg->n_heads)
            return fail(c, "field \"hidden_size\" = %d is not divisible by num_attention_heads = %d "
                        "(and no head_dim given)", cfg->dim, cfg->n_heads);
        cfg->head_dim = cfg->dim / cfg->n_heads;
        if (cfg->head_dim > 1024) return fail(c, "implied head_dim %d exceeds 1024", cfg->head_dim);
    }
    if (cfg->head_dim % 2) return fail(c, "field \"head_dim\" = %d must be even for RoPE", cfg->head_dim);
    if ((long)cfg->n_heads * cfg->head_dim > 65536)
        return fail(c, "num_attention_heads * head_dim exceeds 65536");
    return 0;
}

static int parse_root(Ctx *c, json_t *root, ModelConfig *cfg) {
    if (!json_is_object(root)) return fail(c, "top level must be a JSON object");
    if (check_arch(c, root) || parse_shape(c, root, cfg)) return -1;
    if (get_num(c, root, "", "rms_norm_eps", &cfg->norm_eps, 1.0, 0) || parse_rope(c, root, cfg))
        return -1;
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie)) return fail(c, "field \"tie_word_embeddings\" must be true or false");
    cfg->tied = tie ? json_is_true(tie) : 0;
    return parse_tokens(c, root, cfg);
}

int model_config_load(const char *path, ModelConfig *cfg, char *err, size_t errlen) {
    Ctx c = {path, err, errlen};
    json_error_t je;
    memset(cfg, 0, sizeof *cfg);
    /* config.json is small; refuse anything absurd before parsing it */
    FILE *f = fopen(path, "rb");
    if (!f) return fail(&c, "cannot open: %m");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    if (sz < 0 || sz > (1 << 20)) return fail(&c, "file size %ld is not in [0, 1 MiB]", sz);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return fail(&c, "invalid JSON at line %d: %s", je.line, je.text);
    int rc = parse_root(&c, root, cfg);
    json_decref(root);
    return rc;
}
