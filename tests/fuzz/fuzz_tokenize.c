/* fuzz_tokenize.c - libFuzzer harness for tokenizer_encode/decode
 * (model/tok_encode.c, tok_bpe.c) with the genuine Llama 3.2 tokenizer: the
 * input is message text as an event brings it (any bytes; the event decoder
 * lets only NUL-free UTF-8 through, but encode must refuse the rest itself).
 *
 * The tokenizer is loaded once from $GUARDD_TOKENIZER. Properties: valid
 * UTF-8 encodes (invalid is refused, agreeing with an independent check);
 * without special tokens, decode(encode(text)) == text; with them, every id
 * is inside the vocabulary.
 */
#include "fuzz_common.h"
#include "tokenizer.h"
#include <string.h>

static Tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    tok = fuzz_load_tokenizer("fuzz_tokenize");
    return 0;
}

/* RFC 3629 UTF-8, written independently of the tokenizer's checker. */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp, min;
        size_t k;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + k >= n) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    int nv = tokenizer_vocab_size(tok);
    int valid = utf8_valid(data, size);
    for (int special = 0; special <= 1; special++) {
        TokenVec v = {0};
        int rc = tokenizer_encode(tok, (const char *)data, size, special, &v, err, sizeof err);
        FUZZ_ASSERT((rc == 0) == valid, "encode %s text that is %s UTF-8 (%s)", rc ? "refused" : "accepted",
                    valid ? "valid" : "invalid", rc ? err : "");
        if (rc == 0) {
            for (size_t i = 0; i < v.n; i++)
                FUZZ_ASSERT(v.ids[i] >= 0 && v.ids[i] < nv, "id %d outside [0, %d)", v.ids[i], nv);
            size_t len;
            char *s = tokenizer_decode(tok, v.ids, v.n, &len);
            FUZZ_ASSERT(s, "decode failed");
            FUZZ_ASSERT(len == size && !memcmp(s, data, size), "decode(encode(text)) != text (special=%d)",
                        special);
            free(s);
        }
        tokvec_free(&v);
    }
    return 0;
}
