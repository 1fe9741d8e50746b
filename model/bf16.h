/* bf16.h - conversions between f32 and the 16-bit float formats found in
 * safetensors checkpoints (bf16 and IEEE half / f16).
 *
 * bf16 is the top half of an f32, so decoding is a 16-bit shift and encoding
 * rounds the dropped low half to nearest-even. f16 has its own exponent bias
 * (15) and 10 mantissa bits, so both directions handle zero, subnormals,
 * infinities and NaN explicitly. All functions are pure and header-only so the
 * loader, the fixture writer and the tests share one definition.
 */
#ifndef GUARDD_BF16_H
#define GUARDD_BF16_H
#include <stdint.h>
#include <string.h>

static inline float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* Round to nearest, ties to even; NaN stays a (quiet) NaN. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f)                       /* inf / NaN keep their payload */
        return bits_to_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return bits_to_f32(sign);
        /* subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round to nearest even; overflow gives inf, underflow gives subnormals/zero. */
static inline uint16_t f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;            /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u;           /* >= 65520 rounds to inf */
    if (a < 0x38800000u) {                                 /* below 2^-14: subnormal */
        /* scale so the f16 subnormal step (2^-24) becomes 1.0; the float
         * conversion then rounds to nearest even for us */
        float v = bits_to_f32(a) * 16777216.0f;
        uint32_t m = (uint32_t)__builtin_nearbyintf(v);  /* default rounding mode: even */
        return sign | (uint16_t)m;                         /* m == 0x400 is the smallest normal */
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);            /* round mantissa to 10 bits */
    return sign | (uint16_t)(((r >> 13) - (112u << 10)) & 0xffffu);
}
#endif
