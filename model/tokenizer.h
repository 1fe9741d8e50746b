/* tokenizer.h - Hugging Face tokenizer.json (byte-level BPE, Llama 3).
 *
 * Loads the vocabulary, merges, added/special tokens and the pre-tokenizer's
 * Split regex from the file; the regex runs on PCRE2 (UTF + UCP, JIT).
 * Thread-safe after load: encode/decode keep no shared mutable state.
 */
#ifndef GUARDD_TOKENIZER_H
#define GUARDD_TOKENIZER_H
#include <stddef.h>

typedef struct { int *ids; size_t n, cap; } TokenVec;
void tokvec_push(TokenVec *v, int id);
void tokvec_free(TokenVec *v);

typedef struct Tokenizer Tokenizer;

Tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
void tokenizer_free(Tokenizer *t);

/* Appends the ids of text[0..len) to out. allow_special: special-token text
 * (e.g. "<|eot_id|>") becomes the special token; otherwise it is plain text.
 * Invalid UTF-8 is an error (-1 with err set), never undefined behaviour. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int allow_special,
                     TokenVec *out, char *err, size_t errlen);

/* Returns a malloc'd NUL-terminated string (length in *len if non-NULL; the
 * bytes may contain NULs or end mid UTF-8 sequence, as the ids say). Special
 * ids give their text; ids the tokenizer does not have are skipped. NULL only
 * if out of memory. */
char *tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, size_t *len);

/* Id of a vocabulary entry or special token by its exact text, or -1. The
 * text is raw (what the token decodes to): " safe" -> 6220, "<|eot_id|>" ->
 * 128009; not the byte-level spelling of tokenizer.json ("Ġsafe"). */
int tokenizer_token_id(const Tokenizer *t, const char *piece);
int tokenizer_vocab_size(const Tokenizer *t);   /* 1 + highest id (128256) */

#endif
