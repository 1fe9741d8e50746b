/* fixture.h - writes random-weight Llama checkpoints for tests and benchmarks.
 *
 * fixture_write() produces a directory model_load() accepts: config.json plus
 * model.safetensors (or model.safetensors.index.json + N shards), tensors in
 * name-sorted order like the real Llama Guard 3 1B file, header padded with
 * spaces to a multiple of 8. Weights are deterministic in (seed, tensor name,
 * element index) via a counter-based generator, so a test can recompute any
 * element with fixture_value(). Data is generated and written in chunks, so a
 * 3 GB checkpoint is written without holding it in memory.
 */
#ifndef GUARDD_FIXTURE_H
#define GUARDD_FIXTURE_H
#include <stddef.h>
#include <stdint.h>
#include "model.h"
#include "prompt.h"
#include "safetensors.h"

typedef struct {
    ModelConfig cfg;
    uint64_t seed;
    StDtype dtype;      /* storage dtype of every tensor (default BF16) */
    int shards;         /* 1: model.safetensors; N > 1: index + N shard files */
    int header_only;    /* write config.json and FILE.header (8-byte length +
                           header JSON of each safetensors file), no data */
    PromptFormat prompt_format; /* whose chat template fixture_write_tokenizer_config writes */
} FixtureSpec;

/* Fills spec from a preset name: "tiny" (2 layers, dim 32, 4 heads / 2 KV
 * heads, head_dim 8, MLP 64, the real vocab 128256 and token ids, llama3 rope,
 * untied; ~16 MB in bf16), "tiny-8b" (the same shape with the 8B's prompt
 * format), "llama-guard-3-1b" (the exact shape of the real checkpoint, ~3 GB)
 * or "llama-guard-3-8b" (Llama 3.1 8B: 32 layers, dim 4096, 32/8 heads,
 * head_dim 128, MLP 14336, untied; ~16 GB). seed 1, BF16, one file; the 1B
 * presets carry the 1B's prompt format, the 8B ones the 8B's. Returns 0 or -1. */
int fixture_preset(const char *name, FixtureSpec *spec, char *err, size_t errlen);

/* Writes the checkpoint into dir (created, with parents, if needed). The
 * config is validated by reading the written config.json back with
 * model_config_load(). Returns 0, or -1 with err set. */
int fixture_write(const char *dir, const FixtureSpec *spec, char *err, size_t errlen);

/* The value (before rounding to the storage dtype) of element i (row-major)
 * of tensor `name` with `ndim` dimensions and `cols` columns (last dim).
 * 1-D tensors (norm weights) are 1 +/- 0.1; matrices are uniform with
 * standard deviation 1/sqrt(cols), so activations stay O(1) at any width. */
float fixture_value(uint64_t seed, const char *name, int ndim, int64_t cols, size_t i);

/* Writes dir/tokenizer_config.json as Hugging Face ships it for Llama Guard 3
 * (bos/eos tokens, model_max_length) with fmt's chat template, so the prompt
 * family is detected from the directory (prompt_format.h). 0 or -1. */
int fixture_write_tokenizer_config(const char *dir, PromptFormat fmt, int max_pos, char *err, size_t errlen);

/* Writes cfg as a Hugging Face config.json at path. Returns 0 or -1. */
int fixture_write_config(const char *path, const ModelConfig *cfg, char *err, size_t errlen);
#endif
