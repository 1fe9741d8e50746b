/* fuzz_tokenizer.c - libFuzzer harness for the tokenizer.json loader
 * (model/tokenizer.c, tok_bpe.c): the input is a whole tokenizer.json. The
 * genuine file is 9 MB; this target is meant for small ones (the seeds are
 * complete byte-level BPE tokenizers of a few KB), where the fuzzer can reach
 * every check of the loader: vocabulary, merges, added tokens, the
 * pre-tokenizer regex and its \s rewriting.
 *
 * A tokenizer that loads is then used: a fixed text (with and without special
 * tokens, and an invalid UTF-8 one that must be refused) is encoded, every id
 * must be below tokenizer_vocab_size(), and the ids decode back to the text
 * exactly when special tokens are not enabled (byte-level BPE loses nothing).
 */
#include "fuzz_common.h"
#include "tokenizer.h"
#include <string.h>

static FuzzFile file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_file_init(&file, "tokenizer.json");
    return 0;
}

static void use(const Tokenizer *t) {
    static const char text[] = "Hello, world! <|begin_of_text|>  \n\n123456 caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80 'll";
    char err[256];
    int nv = tokenizer_vocab_size(t);
    for (int special = 0; special <= 1; special++) {
        TokenVec v = {0};
        if (tokenizer_encode(t, text, sizeof text - 1, special, &v, err, sizeof err) == 0) {
            for (size_t i = 0; i < v.n; i++)
                FUZZ_ASSERT(v.ids[i] >= 0 && v.ids[i] < nv, "id %d outside [0, %d)", v.ids[i], nv);
            size_t len;
            char *s = tokenizer_decode(t, v.ids, v.n, &len);
            FUZZ_ASSERT(s, "decode failed");
            if (!special)
                FUZZ_ASSERT(len == sizeof text - 1 && !memcmp(s, text, len), "decode(encode(text)) != text");
            free(s);
        }
        tokvec_free(&v);
    }
    TokenVec v = {0};
    FUZZ_ASSERT(tokenizer_encode(t, "ab\xc3(", 4, 0, &v, err, sizeof err) != 0, "invalid UTF-8 accepted");
    tokvec_free(&v);
    (void)tokenizer_token_id(t, "<|begin_of_text|>");
    (void)tokenizer_token_id(t, " the");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    err[0] = 0;
    fuzz_file_set(&file, data, size);
    Tokenizer *t = tokenizer_load(file.path, err, sizeof err);
    if (t) {
        use(t);
        tokenizer_free(t);
    } else {
        FUZZ_ASSERT(err[0], "tokenizer_load failed without a message");
    }
    fuzz_check_fds(&file, "tokenizer_load");
    return 0;
}
