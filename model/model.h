/* model.h - a Llama checkpoint in memory: its config and its weights.
 *
 * model_load() reads a Hugging Face checkpoint directory: config.json plus
 * model.safetensors or model.safetensors.index.json (+ shards). Every shape
 * number comes from config.json. Weight matrices are kept in the precision
 * asked for (weights.h: f32, bf16 or int8; the 1-D norm weights are always
 * f32), converted straight from the checkpoint's bf16/f16/f32 tensors with no
 * intermediate f32 copy of a whole matrix, and laid out for the batched
 * forward pass: Q/K/V fused into one [qkv, dim]
 * matrix and gate/up into one [2*hidden, dim] matrix per layer, so each costs
 * one GEMM. Row-major, [out_features, in_features] as in the checkpoint.
 * The checkpoint must hold exactly the Llama tensors the config implies
 * (missing, unexpected or misshapen tensors are errors). When the config is
 * tied, lm_head points at embed; a redundant lm_head.weight in a tied
 * checkpoint is shape-checked and ignored (as transformers re-ties it).
 * bos_id is -1 and n_eos 0 when config.json does not give them.
 */
#ifndef GUARDD_MODEL_H
#define GUARDD_MODEL_H
#include <stddef.h>
#include "weights.h"

#define MODEL_MAX_EOS 8

typedef struct {
    int n_layers;       /* num_hidden_layers */
    int dim;            /* hidden_size */
    int n_heads;        /* num_attention_heads */
    int n_kv_heads;     /* num_key_value_heads (default n_heads) */
    int head_dim;       /* head_dim (default dim / n_heads) */
    int hidden_dim;     /* intermediate_size */
    int vocab_size;
    int max_pos;        /* max_position_embeddings */
    float norm_eps;     /* rms_norm_eps */
    float rope_theta;
    int rope_llama3;    /* rope_scaling.rope_type == "llama3" */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_max_pos;
    int tied;           /* tie_word_embeddings */
    int bos_id;
    int eos_ids[MODEL_MAX_EOS];
    int n_eos;
} ModelConfig;

typedef struct {
    float *attn_norm;   /* [dim] input_layernorm */
    WeightMatrix wqkv;  /* [(n_heads + 2*n_kv_heads) * head_dim, dim]: q rows, k rows, v rows */
    WeightMatrix wo;    /* [dim, n_heads * head_dim] */
    float *mlp_norm;    /* [dim] post_attention_layernorm */
    WeightMatrix w13;   /* [2 * hidden_dim, dim]: gate rows then up rows */
    WeightMatrix w2;    /* [dim, hidden_dim] down_proj */
} LayerWeights;

typedef struct {
    WeightMatrix embed;   /* [vocab, dim] */
    LayerWeights *layers;
    float *final_norm;    /* [dim] */
    WeightMatrix lm_head; /* [vocab, dim]; the same storage as embed when tied */
} Weights;

typedef struct {
    ModelConfig cfg;
    Weights w;
    char name[128];     /* directory base name unless config says otherwise */
    char revision[80];  /* 16 hex digits of sha256 over config.json, the safetensors
                           headers and the first/last 4 KiB of every tensor */
    Precision precision;      /* the stored form (never AUTO) */
    const char *kernels;      /* wm_kernels(precision) at load time */
    size_t weight_bytes;      /* bytes held (values, scales, norms) */
    double load_seconds;
    double load_fill_seconds; /* of which: allocating and faulting in the weights' memory */
    long peak_rss_kb;         /* process peak RSS after the load (VmHWM) */
    void *priv;               /* loader-owned allocations */
} Model;

/* Parses config.json at path. Returns 0, or -1 with a message naming the file
 * and field in err. Refuses unknown architectures and rope types. */
int model_config_load(const char *path, ModelConfig *cfg, char *err, size_t errlen);

/* Loads a checkpoint directory in precision p (AUTO: precision_resolve).
 * Returns NULL with err set on any problem. */
Model *model_load_precision(const char *dir, Precision p, char *err, size_t errlen);
/* model_load_precision(dir, PREC_F32, ...): the exact f32 reference. */
Model *model_load(const char *dir, char *err, size_t errlen);
void model_free(Model *m);

/* This process's peak resident set size so far (VmHWM), in kB; -1 if unknown. */
long model_process_peak_rss_kb(void);

#endif
