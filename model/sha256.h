/* sha256.h - a small streaming SHA-256 (FIPS 180-4), used to derive the
 * model revision string from config.json and the safetensors headers. */
#ifndef GUARDD_SHA256_H
#define GUARDD_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    unsigned char buf[64];
    size_t nbuf;
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
void sha256_final(Sha256 *s, unsigned char out[32]);
/* Writes the first nhex hex digits (<= 64) of the digest plus a NUL. */
void sha256_hex(const unsigned char digest[32], char *out, int nhex);
#endif
