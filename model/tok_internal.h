/* tok_internal.h - private layout shared by the tokenizer's source files.
 *
 * tokenizer.c loads tokenizer.json into this structure, tok_bpe.c holds the
 * hash maps and the BPE merge loop, tok_encode.c the UTF-8 check, special-token
 * splitting, regex pre-tokenization, encode and decode.
 *
 * Every token is stored as its raw bytes (the byte-level alphabet of the file,
 * GPT-2's bytes_to_unicode, is undone at load time), so encoding never maps
 * text to that alphabet and decoding is a plain concatenation.
 */
#ifndef GUARDD_TOK_INTERNAL_H
#define GUARDD_TOK_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stddef.h>
#include "tokenizer.h"

/* Bound on ids accepted from the file: they fit in 22 bits, and an all-ones
 * pair key cannot occur, so it cannot be mistaken for an empty merge slot. */
#define TOK_MAX_ID        ((1 << 22) - 1)
#define TOK_MAX_TOKEN_LEN 4096        /* bound on one token's byte length */

/* Open-addressing map from a token's bytes to its id (slot: id + 1, 0 = empty). */
typedef struct {
    uint32_t *slot;     /* id + 1 */
    uint32_t *hash;     /* full 32-bit hash per slot, to skip most memcmps */
    size_t mask;
} TokVocabMap;

/* Open-addressing map from an id pair to its merge rank, one 64-bit word per
 * slot ((left << 22 | right) << 20 | rank) so the table is small enough to
 * stay in cache; the merged id of each rank is in a separate array. */
#define TOK_MAX_MERGES ((1 << 20) - 1)
#define TOK_EMPTY_SLOT UINT64_MAX
typedef struct {
    uint64_t *slot;
    int32_t *merged;    /* rank -> id of the merged token */
    size_t mask;
} TokMergeMap;

/* An added token (special or not) as matched in raw text. */
typedef struct {
    int id;
    int special;
    const char *text;   /* points into the arena */
    size_t len;
} TokAdded;

struct Tokenizer {
    char *arena;            /* raw bytes of every token, back to back */
    size_t arena_len, arena_cap;
    uint32_t *tok_off;      /* id -> offset in arena */
    uint32_t *tok_len;      /* id -> length; UINT32_MAX = no such id */
    int n_ids;              /* 1 + the highest id */
    TokVocabMap vocab;      /* BPE vocabulary only (not the added tokens) */
    TokMergeMap merges;
    int byte_id[256];       /* id of each single-byte token */
    int ignore_merges;
    TokAdded *added;        /* sorted by length, longest first */
    size_t n_added;
    uint8_t added_first[256];   /* 1 if some added token starts with that byte */
    size_t added_lens[64];      /* distinct lengths of added tokens, longest first */
    size_t n_added_lens;
    uint32_t *added_slot;       /* open addressing: index into added + 1, 0 = empty */
    uint32_t added_mask;
    int added_nonspecial;       /* any non-special added token (always split) */
    pcre2_code *re;
    int re_jit;             /* 1 if JIT compilation succeeded */
};

/* tok_bpe.c */
uint32_t tok_hash_bytes(const char *s, size_t n);
int tok_vocab_init(TokVocabMap *m, size_t expected);
void tok_vocab_free(TokVocabMap *m);
/* Inserts id (whose bytes are in t's arena); returns 1 if the bytes were already present. */
int tok_vocab_insert(Tokenizer *t, int id);
int tok_vocab_find(const Tokenizer *t, const char *s, size_t n);
int tok_merge_init(TokMergeMap *m, size_t expected);
void tok_merge_free(TokMergeMap *m);
void tok_merge_insert(TokMergeMap *m, int left, int right, int rank, int id);
/* Appends the BPE ids of one pre-token (raw bytes) to out; -1 on allocation failure. */
int tok_bpe(const Tokenizer *t, const char *s, size_t n, TokenVec *out);
/* Pre-tokens up to this many bytes use BPE's array path, longer ones its heap
 * path. Only tests change it (to run everything through the heap path). */
#define TOK_BPE_SHORT_MAX 64
extern size_t tok_bpe_short_max;
/* Grows out so that it holds at least extra more ids; -1 on allocation failure. */
int tok_reserve(TokenVec *out, size_t extra);

#endif
