/* fuzz_model_config.c - libFuzzer harness for the config.json parser
 * (model/config.c, model_config_load()): the input is the file's bytes.
 *
 * Properties of an accepted config, which the forward pass relies on without
 * checking again: heads divide evenly into KV heads, head_dim is even and
 * positive, token ids are inside the vocabulary, sizes within their bounds.
 */
#include "fuzz_common.h"
#include "model.h"

static FuzzFile file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_file_init(&file, "config.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ModelConfig cfg;
    char err[512];
    fuzz_file_set(&file, data, size);
    err[0] = 0;
    if (model_config_load(file.path, &cfg, err, sizeof err) == 0) {
        FUZZ_ASSERT(cfg.n_layers > 0 && cfg.dim > 0 && cfg.hidden_dim > 0 && cfg.vocab_size > 0 && cfg.max_pos > 0,
                    "non-positive size");
        FUZZ_ASSERT(cfg.n_kv_heads > 0 && cfg.n_heads % cfg.n_kv_heads == 0, "heads %d / kv heads %d",
                    cfg.n_heads, cfg.n_kv_heads);
        FUZZ_ASSERT(cfg.head_dim > 0 && cfg.head_dim % 2 == 0, "head_dim %d", cfg.head_dim);
        FUZZ_ASSERT(cfg.bos_id >= -1 && cfg.bos_id < cfg.vocab_size, "bos %d", cfg.bos_id);
        FUZZ_ASSERT(cfg.n_eos >= 0 && cfg.n_eos <= MODEL_MAX_EOS, "n_eos %d", cfg.n_eos);
        for (int i = 0; i < cfg.n_eos; i++)
            FUZZ_ASSERT(cfg.eos_ids[i] >= 0 && cfg.eos_ids[i] < cfg.vocab_size, "eos %d", cfg.eos_ids[i]);
        FUZZ_ASSERT(cfg.rope_theta > 0 && cfg.norm_eps > 0, "rope_theta / rms_norm_eps");
    } else {
        FUZZ_ASSERT(err[0], "model_config_load failed without a message");
    }
    fuzz_check_fds(&file, "model_config_load");
    return 0;
}
