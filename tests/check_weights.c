/* check_weights.c - unit tests of the weight-matrix products (weights.c,
 * wkernels.c, wkernels_i8.c): every precision on every kernel family (a
 * family this CPU lacks runs its best one), small M (streaming kernels) and
 * large M (tiles, BLIS), odd K (vector tails), accumulate, a row stride past N.
 *
 * Each product is checked against a double-precision product of what is
 * stored (the bf16 or dequantized int8 weights; for bf16 dot products the
 * activations as the hi + lo bf16 pairs they are split into, and also the
 * f32 activations themselves, which hi alone would miss by up to 2^-8). The
 * hi/lo packing is checked value by value (tails, padding, inf, NaN), and
 * the bf16 dot-product kernel for giving each row the same bits whatever M
 * it runs in. int8 is also checked to the last bit: every family
 * (AVX512_VNNI, AVX-VNNI, AVX2, plain C) against this file's own exact integer sum of the quantized
 * activations and weights, for 1 and 2 low bits, odd M and K (tails of the
 * 32-column unpacking and of the 4-row tiles), blocks of several sizes, and
 * K past the 32-bit lanes' limit; and the quantizer's levels and bit planes.
 */
#include "check_main.h"
#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "bf16.h"
#include "transformer.h"
#include "weights.h"
#include "wkernels.h"
#include "wkernels_i8.h"

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

typedef struct {
    WeightMatrix w;
    float *f;
    void *a, *b, *c;
} Mat;

static Mat make_bits(Precision p, int N, int K, int lo_bits) {
    Mat m = {0};
    m.f = malloc(sizeof(float) * (size_t)N * K);
    for (size_t i = 0; i < (size_t)N * K; i++) m.f[i] = frand();
    m.w = wm_f32(m.f, N, K);
    if (p == PREC_BF16) {
        m.a = malloc(2 * (size_t)N * K);
        wm_round_bf16(m.f, m.a, (size_t)N * K);
        m.w = (WeightMatrix){.prec = p, .rows = N, .cols = K, .bf16 = m.a};
    } else if (p == PREC_INT8) {
        int words = wm_lo_words(K, lo_bits);
        m.a = malloc((size_t)N * K);
        m.b = malloc(sizeof(float) * N);
        m.c = malloc(sizeof(uint32_t) * (size_t)N * words);
        m.w = (WeightMatrix){.prec = p, .rows = N, .cols = K, .q = m.a, .scale = m.b, .lo = m.c,
                             .lo_bits = lo_bits};
        for (int r = 0; r < N; r++)
            m.w.scale[r] = wm_quantize_row(m.f + (size_t)r * K, K, lo_bits, m.w.q + (size_t)r * K,
                                           m.w.lo + (size_t)r * words);
    }
    return m;
}

static Mat make(Precision p, int N, int K) { return make_bits(p, N, K, WM_I8_BITS_MLP); }

/* An int8 m quantized again from m.f, after a test has written the values
 * it wants there. */
static void requantize(Mat *m) {
    int N = m->w.rows, K = m->w.cols, bits = m->w.lo_bits, words = wm_lo_words(K, bits);
    for (int r = 0; r < N; r++)
        m->w.scale[r] = wm_quantize_row(m->f + (size_t)r * K, K, bits, m->w.q + (size_t)r * K,
                                        m->w.lo + (size_t)r * words);
}

static void drop(Mat *m) { free(m->f); free(m->a); free(m->b); free(m->c); }

/* Y = X·Wᵀ (+ 0.5 when accumulating) against f64 over the stored weights;
 * tol relative to the largest |want|. */
static void check(Precision p, const char *fam, int M, int N, int K, int acc, double tol) {
    ck_assert_int_eq(wm_set_kernels(fam), 0);
    Mat m = make(p, N, K);
    int ldy = N + 3;
    float *X = malloc(sizeof(float) * (size_t)M * K), *Y = malloc(sizeof(float) * (size_t)M * ldy);
    float *row = malloc(sizeof(float) * K);
    for (int i = 0; i < M * K; i++) X[i] = frand();
    for (int i = 0; i < M * ldy; i++) Y[i] = 0.5f;
    wm_matmul(&m.w, M, X, K, Y, ldy, acc, 2);
    int xb = p == PREC_BF16 && !strncmp(wm_kernels(p), "avx512bf16", 10);   /* activations split */
    double worst = 0, worst_exact = 0, scale = 0;
    for (int j = 0; j < N; j++) {
        wm_row(&m.w, j, row);
        for (int i = 0; i < M; i++) {
            double want = acc ? 0.5 : 0, exact = want;
            for (int k = 0; k < K; k++) {
                float x = X[(size_t)i * K + k], hi = bf16_to_f32(f32_to_bf16(x));
                double xs = xb ? (double)hi + bf16_to_f32(f32_to_bf16(x - hi)) : x;
                want += xs * row[k];
                exact += (double)x * row[k];
            }
            double y = Y[(size_t)i * ldy + j];
            if (fabs(y - want) > worst) worst = fabs(y - want);
            if (fabs(y - exact) > worst_exact) worst_exact = fabs(y - exact);
            if (fabs(want) > scale) scale = fabs(want);
        }
    }
    /* hi alone: up to 2^-8 of each activation (measured 1e-3..4e-3 here) */
    if (xb)
        ck_assert_msg(worst_exact <= 2e-5 * scale, "bf16 M=%d N=%d K=%d: %g from the f32 activations",
                      M, N, K, worst_exact / scale);
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldy; j++) ck_assert_float_eq(Y[(size_t)i * ldy + j], 0.5f);
    ck_assert_msg(worst <= tol * scale, "%s/%s (%s) M=%d N=%d K=%d acc=%d: error %g of %g",
                  precision_name(p), fam, wm_kernels(p), M, N, K, acc, worst / scale, tol);
    free(X); free(Y); free(row);
    drop(&m);
}

static const char *const fams[] = {"avx512", "avxvnni", "avx2", "generic"};
#define N_FAMS (int)(sizeof fams / sizeof fams[0])
/* the last two: bf16 widened while packed (gemm_xwt_bf16) over several K
 * blocks with a tail, and over two N blocks (BLIS's KC, NC: 256, ~4000) */
static const int shapes[][4] = {   /* M, N, K, accumulate */
    {1, 33, 20, 0}, {3, 9, 2051, 1}, {16, 6, 70, 1}, {17, 5, 9, 0}, {37, 19, 70, 1}, {70, 260, 64, 0},
    {23, 37, 777, 0}, {19, 4100, 20, 1},
};

START_TEST(test_products) {
    const char *fam = fams[_i];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int *sh = shapes[s];
        check(PREC_F32, fam, sh[0], sh[1], sh[2], sh[3], 1e-5);
        check(PREC_BF16, fam, sh[0], sh[1], sh[2], sh[3], 1e-5);
        /* int8 with 12-bit activations: ~1/2047 of the activation scale */
        check(PREC_INT8, fam, sh[0], sh[1], sh[2], sh[3], 2e-3);
    }
}
END_TEST

/* Y as the int8 contract defines it: activations quantized as the kernels
 * do, the exact integer sum, the shared epilogue's expression. */
static void exact_i8(const Mat *m, int M, const float *X, float *Y, int ldy, int acc) {
    int N = m->w.rows, K = m->w.cols, Kp = WK_I8_PAD(K);
    int16_t *xq = malloc(sizeof(int16_t) * (size_t)Kp);
    for (int i = 0; i < M; i++) {
        float sx = wk_i8_quantize_act(X + (size_t)i * K, K, xq, Kp);
        for (int j = 0; j < N; j++) {
            int64_t s = 0;
            for (int k = 0; k < K; k++) s += (int64_t)xq[k] * wk_i8_weight(m->w.q, m->w.lo, m->w.lo_bits, K, j, k);
            float v = (float)s * (sx * m->w.scale[j]), *y = Y + (size_t)i * ldy + j;
            *y = acc ? *y + v : v;
        }
    }
    free(xq);
}

/* Runs m·X in every family and fails unless each gives exact_i8's result
 * bit for bit. Y has ldy floats a row, each set to fill first (both the
 * kernel's and the reference's), so the columns past N and an accumulated
 * Y start alike; why says what a difference would mean. */
static void expect_exact(const Mat *m, int M, const float *X, int ldy, int acc, float fill, const char *why) {
    int N = m->w.rows, K = m->w.cols;
    size_t n = (size_t)M * ldy;
    float *want = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) want[i] = fill;
    exact_i8(m, M, X, want, ldy, acc);
    for (int f = 0; f < N_FAMS; f++) {
        ck_assert_int_eq(wm_set_kernels(fams[f]), 0);
        for (size_t i = 0; i < n; i++) got[i] = fill;
        wm_matmul(&m->w, M, X, K, got, ldy, acc, 2);
        size_t i = 0;
        while (i < n && memcmp(&got[i], &want[i], sizeof(float)) == 0) i++;
        ck_assert_msg(i == n, "%s (%s) bits=%d M=%d N=%d K=%d: %s (y[%zu] = %a, want %a)", fams[f],
                      wm_kernels(PREC_INT8), m->w.lo_bits, M, N, K, why, i, got[i], want[i]);
    }
    free(want); free(got);
}

/* Every family == the exact integers, bit for bit: odd and even M (tiles of
 * 4 and 2 rows, M <= 16 and block sizes above), K with and without a tail
 * of the 32-column unpacking, 1 and 2 low bits, accumulate. */
START_TEST(test_int8_exact) {
    static const int shp[][3] = {   /* M, N, K */
        {1, 300, 2051}, {2, 7, 31}, {3, 33, 64}, {5, 9, 33}, {16, 65, 1000}, {17, 70, 96},
        {39, 300, 2051}, {64, 130, 4100}, {300, 21, 70},
        {1030, 19, 40},   /* past wk_i8_matmul's 1024-row chunks of X */
        /* AVX-512 M <= 16: chunks of 2048 columns (the last one short, with
         * a tail), 1..4 row tiles, blocks of 64 W rows and a short last one */
        {16, 47, 4100}, {13, 70, 2048}, {9, 21, 96}, {6, 130, 2051}, {4, 200, 64},
    };
    for (int bits = 1; bits <= 2; bits++)
        for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s++) {
            int M = shp[s][0], N = shp[s][1], K = shp[s][2], ldy = N + 2, acc = (int)s % 2;
            Mat m = make_bits(PREC_INT8, N, K, bits);
            float *X = malloc(sizeof(float) * (size_t)M * K);
            for (int i = 0; i < M * K; i++) X[i] = frand() * 3;
            X[K / 2] = 40;   /* one outlier: the rest of its row uses few levels */
            expect_exact(&m, M, X, ldy, acc, 0.25f, "not the exact integer result");
            free(X);
            drop(&m);
        }
}
END_TEST

/* The epilogue alone: every vector variant (AVX2 from int64 and from
 * int32, AVX-512 with and without AVX512DQ) against the formula t = sx·sw, v = (float)S·t,
 * y = y + v or v, each step rounded once (volatile, so this file cannot
 * contract it), bit for bit. Sums: random of every magnitude up to 2^35,
 * the largest ± K·2047·W_MAX(B) of both B, ±1, 0, odd values past 2^24 and
 * float rounding ties; scales of several exponents; accumulate on and off;
 * counts 1..41 and offsets (the 4- and 8-wide tails; int32: sums up to
 * ±INT32_MAX only). A fused multiply-add
 * or a conversion rounding twice differs on some of them. */
static float epi_ref(int64_t S, float sx, float sw, float y, int accumulate) {
    volatile float t = sx * sw, f = (float)S;
    volatile float v = f * t;
    volatile float r = accumulate ? y + v : v;
    return r;
}

START_TEST(test_int8_epilogue) {
    enum { NS = 4096 };
    int64_t *S = malloc(sizeof(int64_t) * NS);
    float *sw = malloc(sizeof(float) * NS), *y0 = malloc(sizeof(float) * NS);
    float *want = malloc(sizeof(float) * NS), *got = malloc(sizeof(float) * NS);
    int n = 0;
    const int64_t top1 = (int64_t)WK_I8_MAX_K(1) * WK_I8_ACT_MAX * WK_I8_W_MAX(1);
    const int64_t top2 = (int64_t)WK_I8_MAX_K(2) * WK_I8_ACT_MAX * WK_I8_W_MAX(2);
    const int64_t fixed[] = {0, 1, -1, top1, -top1, top2, -top2, top1 - 1, -(top2 - 1),
                             (1LL << 35) - 1, -((1LL << 35) - 1), (1LL << 24) + 1, -((1LL << 24) + 1),
                             (1LL << 25) + 2, (1LL << 25) + 6, -((1LL << 25) + 2), (1LL << 34) + (1LL << 10),
                             (1LL << 34) + (3LL << 10), -((1LL << 34) + (1LL << 10)), (1LL << 34) + (1LL << 10) + 1,
                             16777217, 33554435, -33554435, 2147483647, -2147483648LL, 4294967295LL};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) S[n++] = fixed[i];
    while (n < NS) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        int bitsz = (int)(rng % 36);   /* magnitudes 2^0 .. 2^35 */
        int64_t v = (int64_t)((rng >> 20) & ((1ULL << bitsz) - 1));
        if (rng & (1ULL << 63) && v > top2) v = top2;
        S[n++] = (rng >> 62) & 1 ? -v : v;
    }
    for (int i = 0; i < NS; i++) {
        sw[i] = ldexpf(frand(), (i % 7) * 3 - 30);   /* 2^-30 .. 2^-12 */
        y0[i] = ldexpf(frand(), (i % 5) * 4 - 6);
    }
    /* variant 4 (the AVX2 family's from int32) takes only |S| <= INT32_MAX,
     * what a row whose whole sum fits gives: the others shifted down, and
     * the int32 bound itself */
    int64_t *S4 = malloc(sizeof(int64_t) * NS);
    for (int i = 0; i < NS; i++) S4[i] = S[i] > INT32_MAX || S[i] < -INT32_MAX ? S[i] / 32 : S[i];
    S4[0] = INT32_MAX, S4[1] = -INT32_MAX;
    S4[2] = (int64_t)2048 * WK_I8_ACT_MAX * WK_I8_W_MAX(2), S4[3] = -S4[2];
    const float sxs[] = {1.0f / 2047, 0.37f / 2047, 3.1e-3f, 1.7f};
    int tried = 0;
    for (int variant = 1; variant <= 4; variant++)
        for (size_t a = 0; a < sizeof sxs / sizeof sxs[0]; a++)
            for (int acc = 0; acc <= 1; acc++) {
                const int64_t *Sv = variant == 4 ? S4 : S;
                for (int i = 0; i < NS; i++) want[i] = epi_ref(Sv[i], sxs[a], sw[i], y0[i], acc);
                /* the whole array, then short counts at odd offsets */
                memcpy(got, y0, sizeof(float) * NS);
                if (!wk_i8_epilogue(variant, Sv, NS, sxs[a], sw, got, acc)) continue;
                tried++;
                for (int i = 0; i < NS; i++)
                    ck_assert_msg(memcmp(&got[i], &want[i], sizeof(float)) == 0,
                                  "variant %d acc %d S=%lld sx=%a sw=%a y=%a: %a, want %a", variant, acc,
                                  (long long)Sv[i], sxs[a], sw[i], y0[i], got[i], want[i]);
                for (int off = 0, cnt = 1; off + cnt <= NS && cnt <= 41; off += cnt + 3, cnt++) {
                    memcpy(got, y0, sizeof(float) * NS);
                    wk_i8_epilogue(variant, Sv + off, cnt, sxs[a], sw + off, got + off, acc);
                    for (int i = 0; i < NS; i++) {
                        float w = i >= off && i < off + cnt ? want[i] : y0[i];   /* nothing past cnt */
                        ck_assert_msg(memcmp(&got[i], &w, sizeof(float)) == 0,
                                      "variant %d acc %d off %d cnt %d i %d: %a, want %a", variant, acc,
                                      off, cnt, i, got[i], w);
                    }
                }
            }
    /* the reference itself is the formula */
    memcpy(got, y0, sizeof(float) * NS);
    ck_assert_int_eq(wk_i8_epilogue(0, S, NS, sxs[0], sw, got, 1), 1);
    for (int i = 0; i < NS; i++) ck_assert(got[i] == epi_ref(S[i], sxs[0], sw[i], y0[i], 1));
    if (!tried) fprintf(stderr, "check_weights: no vector epilogue on this CPU\n");
    free(S); free(S4); free(sw); free(y0); free(want); free(got);
}
END_TEST

/* The activation quantizer's vector copies (AVX2, AVX-512) against the
 * scalar reference, bit for bit (int16 values, padding and scale), on rows
 * of 1..70 and of model lengths (every tail of the 8-, 16- and 64-value
 * loops) in all four rounding modes: random rows of many magnitudes; exact
 * ties n + 0.5 (scale 2^e: x · inv exact); the clamp bound (±max|x| and its
 * neighbours, whose x · inv lands on either side of 2047); zeros and -0;
 * denormals (a row whose max|x| / 2047 underflows to scale 0 and inv =
 * inf, and denormals among normals); FLT_MAX; NaN and ±inf, each placed at
 * every position of short rows (lanes, tails). Division instead of
 * multiplication by inv, another order of the clamps, a NaN that wins the
 * maximum or a rounding other than the current mode's each differ on some. */
static int q_case(float *x, int K, int c, int pos) {
    float e = ldexpf(1.0f, (c % 13) * 5 - 30);
    switch (c % 9) {
    case 0: for (int k = 0; k < K; k++) x[k] = frand() * e; break;
    case 1:   /* ties: scale 2^e exactly, x = (n + 0.5) · 2^e */
        for (int k = 0; k < K; k++) x[k] = ((float)((int)(frand() * 2047) - (k % 2)) + 0.5f) * e;
        x[pos] = 2047 * e * (c % 2 ? -1 : 1);
        break;
    case 2: {   /* the clamp bound */
        float a = 3.7f * e;
        for (int k = 0; k < K; k++) {
            float v = k % 4 == 0 ? a : k % 4 == 1 ? nextafterf(a, 0) : k % 4 == 2 ? a * 2046.5f / 2047 : frand() * a;
            x[k] = k % 3 == 0 ? -v : v;
        }
        x[pos] = -a;
        break;
    }
    case 3:   /* zeros, -0 */
        for (int k = 0; k < K; k++) x[k] = k % 2 ? -0.0f : 0.0f;
        if (c % 2) x[pos] = 1e-3f;
        break;
    case 4:   /* denormals alone: scale may underflow to 0 */
        for (int k = 0; k < K; k++) x[k] = (k % 3 - 1) * FLT_TRUE_MIN * (float)(k % 5);
        x[pos] = c % 2 ? FLT_TRUE_MIN : -FLT_TRUE_MIN * 3;
        break;
    case 5:   /* denormals among normals */
        for (int k = 0; k < K; k++) x[k] = k % 2 ? FLT_MIN * frand() : frand() * 1e-30f;
        break;
    case 6:   /* huge */
        for (int k = 0; k < K; k++) x[k] = frand() * FLT_MAX;
        x[pos] = c % 2 ? FLT_MAX : -FLT_MAX;
        break;
    case 7:   /* NaN among values */
        for (int k = 0; k < K; k++) x[k] = frand() * e;
        x[pos] = c % 2 ? NAN : -NAN;
        break;
    default:   /* infinities */
        for (int k = 0; k < K; k++) x[k] = frand() * e;
        x[pos] = c % 2 ? INFINITY : -INFINITY;
        if (K > 3) x[(pos + 2) % K] = NAN;
        break;
    }
    return 1;
}

START_TEST(test_int8_quantize_act) {
    static const int modes[] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    enum { KMAX = 8256 };
    float *x = malloc(sizeof(float) * KMAX);
    int16_t *want = malloc(sizeof(int16_t) * KMAX), *got = malloc(sizeof(int16_t) * KMAX);
    int Ks[90], nK = 0, tried = 0, rows = 0;
    for (int K = 1; K <= 70; K++) Ks[nK++] = K;
    static const int big[] = {127, 128, 2047, 2048, 2051, 8192, 8193};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) Ks[nK++] = big[i];
    for (size_t md = 0; md < sizeof modes / sizeof *modes; md++) {
        ck_assert_int_eq(fesetround(modes[md]), 0);
        for (int ki = 0; ki < nK; ki++) {
            int K = Ks[ki], ldx = WK_I8_PAD(K) + (ki % 2) * 16;
            for (int c = 0; c < 36; c++) {
                int npos = K <= 70 && c % 9 >= 6 ? K : 1;   /* specials at every position */
                for (int pos0 = 0; pos0 < npos; pos0++) {
                    int pos = npos == 1 ? (c * 7919) % K : pos0;
                    q_case(x, K, c, pos);
                    float ws, gs;
                    for (int i = 0; i < ldx; i++) want[i] = 0x5a5a;
                    ck_assert_int_eq(wk_i8_quantize_variant(0, x, K, want, ldx, &ws), 1);
                    rows++;
                    for (int v = 1; v <= 2; v++) {
                        for (int i = 0; i < ldx; i++) got[i] = 0x5a5a;
                        if (!wk_i8_quantize_variant(v, x, K, got, ldx, &gs)) continue;
                        tried++;
                        ck_assert_msg(memcmp(&gs, &ws, sizeof gs) == 0,
                                      "variant %d mode %zu K=%d case %d pos %d: scale %a, want %a", v, md, K,
                                      c, pos, gs, ws);
                        for (int i = 0; i < ldx; i++)
                            ck_assert_msg(got[i] == want[i],
                                          "variant %d mode %zu K=%d case %d pos %d: out[%d] = %d, want %d "
                                          "(x = %a)", v, md, K, c, pos, i, got[i], want[i],
                                          i < K ? x[i] : 0.0f);
                    }
                }
            }
        }
    }
    fesetround(FE_TONEAREST);
    /* the reference itself: ties to even, NaN and +inf to the top level,
     * -inf to the bottom, zeros past K (scale 1: the row's max is 2047) */
    float r[6] = {2047, 0.5f, 1.5f, -2.5f, NAN, -INFINITY};
    int16_t q[8];
    ck_assert_float_eq(wk_i8_quantize_act(r, 4, q, 8), 1.0f);
    ck_assert(q[0] == 2047 && q[1] == 0 && q[2] == 2 && q[3] == -2 && q[4] == 0 && q[7] == 0);
    float s = wk_i8_quantize_act(r, 6, q, 8);   /* max|x| = inf: inv = 0, inf · 0 = NaN */
    ck_assert(isinf(s));
    ck_assert(q[0] == 0 && q[4] == 2047 && q[5] == 2047);
    if (!tried) fprintf(stderr, "check_weights: no vector quantizer on this CPU\n");
    else fprintf(stderr, "check_weights: quantizer: %d rows, %d vector comparisons\n", rows, tried);
    free(x); free(want); free(got);
}
END_TEST

/* The largest sums the vector families take: K = WK_I8_MAX_K(B), every
 * weight and activation at its top level (± WK_I8_W_MAX(B), ± 2047), so
 * every 32-bit lane of every family gathers as much as its bound allows
 * (the AVX2 tiles sum a whole K chunk per lane, the dot-product tiles K/8):
 * one product too many in a lane and the sum wraps. Rows of +1, -1 and
 * alternating signs; 7 X rows (a full AVX2 tile and a tail), the last
 * negated. Bit for bit against the exact integers. */
START_TEST(test_int8_lane_bound) {
    for (int bits = 1; bits <= 2; bits++) {
        int M = 7, N = 3, K = WK_I8_MAX_K(bits);
        Mat m = make_bits(PREC_INT8, N, K, bits);
        for (int r = 0; r < N; r++)
            for (int k = 0; k < K; k++) m.f[(size_t)r * K + k] = r == 0 ? 1.0f : r == 1 ? -1.0f : (k % 2 ? 1.0f : -1.0f);
        requantize(&m);
        ck_assert_int_eq(wk_i8_weight(m.w.q, m.w.lo, bits, K, 1, K - 1), -WK_I8_W_MAX(bits));
        float *X = malloc(sizeof(float) * (size_t)M * K);
        for (int i = 0; i < M * K; i++) X[i] = i / K == M - 1 ? -1.0f : 1.0f;
        expect_exact(&m, M, X, N, 0, NAN, "a 32-bit lane overflowed");
        free(X);
        drop(&m);
    }
}
END_TEST

/* The largest sums: every weight and activation at its top level, so a
 * row's K products add up to K · 2047 · W_MAX(B) (2^31 - 5e6 for K = 2048
 * and B = 2, the most that the int32 reductions take; 4.3e9 for K = 8192
 * and B = 1, summed in chunks), for M <= 16 and above, against the exact
 * integers in every family. */
START_TEST(test_int8_extremes) {
    static const int shp[][3] = {{16, 9, 2048}, {40, 9, 2048}, {16, 9, 8192}, {40, 9, 8192}, {1, 5, 8192}};
    for (size_t s = 0; s < sizeof shp / sizeof shp[0]; s++)
        for (int bits = 1; bits <= 2; bits++) {
            int M = shp[s][0], N = shp[s][1], K = shp[s][2];
            if (K > WK_I8_MAX_K(bits)) continue;
            Mat m = make_bits(PREC_INT8, N, K, bits);
            for (int i = 0; i < N * K; i++) m.f[i] = i / K % 2 ? -1.0f : 1.0f;
            requantize(&m);
            for (int r = 0; r < N; r++)
                ck_assert_int_eq(wk_i8_weight(m.w.q, m.w.lo, bits, K, r, K - 1), r % 2 ? -WK_I8_W_MAX(bits) : WK_I8_W_MAX(bits));
            float *X = malloc(sizeof(float) * (size_t)M * K);
            for (int i = 0; i < M * K; i++) X[i] = i / K % 3 == 1 ? -2.0f : 2.0f;
            expect_exact(&m, M, X, N, 0, NAN, "not the exact integer result");
            free(X);
            drop(&m);
        }
}
END_TEST

/* K past WK_I8_MAX_K(2): the vector families hand over to plain C (64-bit
 * sums), with the largest integers on both sides. */
START_TEST(test_int8_long_rows) {
    int M = 2, N = 3, K = WK_I8_MAX_K(2) + 40;
    Mat m = make_bits(PREC_INT8, N, K, 2);
    for (int i = 0; i < N * K; i++) m.f[i] = 1;
    requantize(&m);
    float *X = malloc(sizeof(float) * (size_t)M * K), *Y = malloc(sizeof(float) * (size_t)M * N);
    for (int i = 0; i < M * K; i++) X[i] = 1;
    ck_assert_int_eq(wm_set_kernels("avx512"), 0);
    wm_matmul(&m.w, M, X, K, Y, N, 0, 2);
    for (int i = 0; i < M * N; i++) ck_assert_float_eq_tol(Y[i], (float)K, K * 1e-6f);
    free(X); free(Y);
    drop(&m);
}
END_TEST

/* The stored integers: the row's largest |value| at the top level, every
 * value within half a step, low bits past K clear. */
START_TEST(test_int8_quantize) {
    for (int bits = 1; bits <= 2; bits++) {
        int K = 45, vmax = WK_I8_W_MAX(bits);
        float src[45];
        int8_t q[45];
        uint32_t lo[4];
        for (int k = 0; k < K; k++) src[k] = frand();
        src[7] = -1.5f;
        float s = wm_quantize_row(src, K, bits, q, lo);
        ck_assert_float_eq_tol(s, 1.5f / vmax, 1e-9f);
        ck_assert_int_eq(wk_i8_weight(q, lo, bits, K, 0, 7), -vmax);
        for (int k = 0; k < K; k++) {
            int v = wk_i8_weight(q, lo, bits, K, 0, k);
            ck_assert_int_le(abs(v), vmax);
            ck_assert_float_le(fabsf(v * s - src[k]), s / 2 * 1.0001f);
        }
        for (int p = 0; p < bits; p++) ck_assert_uint_eq(lo[p * WK_I8_LO_WORDS(K) + 1] >> (K - 32), 0);
    }
}
END_TEST

/* The load-time quantizer against the plain formula, value by value: the
 * nearest level (ties to even), clamped to +-vmax, hi = floor(v / 2^B) and
 * lo = v - 2^B·hi, for rows of 1..100 values with exact ties, +-0, NaN and
 * infinities (which clamp: NaN to +vmax, as the comparison falls through). */
START_TEST(test_int8_quantize_exact) {
    for (int bits = 1; bits <= 2; bits++)
        for (int K = 1; K <= 100; K++) {
            int vmax = WK_I8_W_MAX(bits), words = WK_I8_LO_WORDS(K);
            float src[100];
            int8_t q[100];
            uint32_t lo[8];
            memset(lo, 0xa5, sizeof lo);
            for (int k = 0; k < K; k++) src[k] = frand() * 3;
            if (K > 9) {
                src[1] = 0.0f;
                src[2] = -0.0f;
                src[3] = NAN;
                src[4] = INFINITY;
                src[5] = -INFINITY;
            }
            float s = wm_quantize_row(src, K, bits, q, lo);
            float inv = 1.0f / s;
            for (int k = 0; k < K; k++) {
                float t = src[k] * inv;
                t = t < (float)vmax ? t : (float)vmax;
                t = t > (float)-vmax ? t : (float)-vmax;
                long v = lrintf(t);
                long h = v >= 0 ? v / (1L << bits) : -((-v + (1L << bits) - 1) / (1L << bits));
                long l = v - h * (1L << bits);
                long got_l = 0;
                for (int p = 0; p < bits; p++) got_l |= (long)((lo[p * words + k / 32] >> (k % 32)) & 1) << p;
                ck_assert_msg(q[k] == h && got_l == l, "B=%d K=%d k=%d x=%g: %d/%ld, want %ld/%ld", bits,
                              K, k, src[k], q[k], got_l, h, l);
            }
            /* bits past K in the last word are clear */
            for (int p = 0; p < bits && K % 32; p++)
                ck_assert_uint_eq(lo[p * words + words - 1] >> (K % 32), 0);
        }
    /* exact ties: x / scale = n + 0.5 rounds to even */
    float src[4] = {255.0f, 0.5f, 1.5f, -2.5f};
    int8_t q[4];
    uint32_t lo[1];
    ck_assert_float_eq(wm_quantize_row(src, 4, 1, q, lo), 1.0f);
    ck_assert_int_eq(wk_i8_weight(q, lo, 1, 4, 0, 1), 0);
    ck_assert_int_eq(wk_i8_weight(q, lo, 1, 4, 0, 2), 2);
    ck_assert_int_eq(wk_i8_weight(q, lo, 1, 4, 0, 3), -2);
}
END_TEST

/* hi = bf16(x), lo = bf16(x - hi) in blocks of 32 (32 hi, then 32 lo), the
 * last block zero-padded; inf and NaN keep lo = 0. */
START_TEST(test_bf16_split) {
    static const int Ks[] = {1, 20, 31, 32, 33, 70, 2051};
    for (size_t t = 0; t < sizeof Ks / sizeof Ks[0]; t++) {
        int K = Ks[t], ld = wk_bf16_split_ld(K);
        ck_assert_int_eq(ld, 2 * ((K + 31) / 32 * 32));
        float *x = malloc(sizeof(float) * K);
        uint16_t *out = malloc(sizeof(uint16_t) * ld);
        for (int k = 0; k < K; k++) x[k] = frand() * (k % 7 == 0 ? 1e4f : 1.0f);
        if (K > 5) {
            x[0] = INFINITY;
            x[1] = -INFINITY;
            x[2] = NAN;
            x[3] = 3.4e38f;     /* finite, rounds to inf: lo = 0 as for inf */
            x[4] = 1e-40f;      /* subnormal */
            x[5] = 1.0f + 1.0f / 256 + 1.0f / 65536;   /* needs lo */
        }
        memset(out, 0xab, sizeof(uint16_t) * ld);
        wk_bf16_split_row(x, K, out);
        for (int k = 0; k < ld / 2; k++) {
            uint16_t hi = out[2 * (k & ~31) + (k & 31)], lo = out[2 * (k & ~31) + 32 + (k & 31)];
            if (k >= K) {
                ck_assert_msg(hi == 0 && lo == 0, "K=%d: padding at %d is %04x %04x", K, k, hi, lo);
                continue;
            }
            uint16_t want_hi = f32_to_bf16(x[k]);
            int special = (want_hi & 0x7f80) == 0x7f80;
            uint16_t want_lo = special ? 0 : f32_to_bf16(x[k] - bf16_to_f32(want_hi));
            ck_assert_msg(hi == want_hi && lo == want_lo, "K=%d k=%d x=%g: %04x %04x, want %04x %04x",
                          K, k, x[k], hi, lo, want_hi, want_lo);
            if (!special && K > 5 && k == 5)   /* hi + lo carries x's bits past bf16's 8 */
                ck_assert_float_eq(bf16_to_f32(hi) + bf16_to_f32(lo), x[k]);
        }
        free(x);
        free(out);
    }
}
END_TEST

/* Up to wm_bf16_tile_max_m() rows (the tile kernel) each row of X gets the
 * same bits from the bf16 product whatever M is and whichever rows share
 * its tile; above, on oneDNN, whose summation order follows M, each row
 * stays within f32 rounding of its one-at-a-time result (batched == one at
 * a time, 1e-5). Both limits a CPU can choose, 16 and 64 (M = 40: the tile
 * kernel under 64, oneDNN under 16), whatever this CPU is. */
START_TEST(test_bf16_rows_independent) {
    const char *fam = "avx512";   /* the widened paths take BLIS above M = 16 */
    ck_assert_int_eq(wm_set_kernels(fam), 0);
    const int limit = _i ? 64 : 16;
    ck_assert_int_eq(wm_set_bf16_tile_max_m(limit), 0);
    ck_assert_int_eq(wm_bf16_tile_max_m(), limit);
    int N = 37, K = 2083;
    Mat m = make(PREC_BF16, N, K);
    const int Ms[] = {13, 40, limit + 7};
    for (int t = 0; t < 3; t++) {
        int M = Ms[t];
        float *X = malloc(sizeof(float) * (size_t)M * K), *all = malloc(sizeof(float) * (size_t)M * N);
        float *one = malloc(sizeof(float) * N);
        for (int i = 0; i < M * K; i++) X[i] = frand() * 4;
        wm_matmul(&m.w, M, X, K, all, N, 0, 2);
        for (int i = 0; i < M; i++) {
            wm_matmul(&m.w, 1, X + (size_t)i * K, K, one, N, 0, 1);
            if (M <= limit && wk_have_avx512bf16()) {   /* widened: BLIS above 16 */
                ck_assert_msg(memcmp(one, all + (size_t)i * N, sizeof(float) * N) == 0,
                              "%s (%s): row %d of %d differs alone", fam, wm_kernels(PREC_BF16), i, M);
                continue;
            }
            float amax = 0, dmax = 0;
            for (int n = 0; n < N; n++) {
                float a = fabsf(one[n]), d = fabsf(one[n] - all[(size_t)i * N + n]);
                amax = a > amax ? a : amax;
                dmax = d > dmax ? d : dmax;
            }
            ck_assert_msg(dmax <= 1e-5f * amax, "%s: row %d of %d is %g off alone (max %g)",
                          wm_kernels(PREC_BF16), i, M, dmax, amax);
        }
        free(X); free(all); free(one);
    }
    drop(&m);
    ck_assert_int_eq(wm_set_bf16_tile_max_m(0), 0);
}
END_TEST

/* The limit: chosen by the CPU (16 or 64), settable within 16..4096 for
 * tests and benchmarks, 0 restoring the CPU's choice. */
START_TEST(test_bf16_tile_limit) {
    int cpu = wm_bf16_tile_max_m();
    ck_assert_msg(cpu == 16 || cpu == 64, "limit %d", cpu);
    ck_assert_int_eq(wm_set_bf16_tile_max_m(15), -1);
    ck_assert_int_eq(wm_set_bf16_tile_max_m(4097), -1);
    ck_assert_int_eq(wm_set_bf16_tile_max_m(-1), -1);
    ck_assert_int_eq(wm_bf16_tile_max_m(), cpu);
    ck_assert_int_eq(wm_set_bf16_tile_max_m(200), 0);
    ck_assert_int_eq(wm_bf16_tile_max_m(), 200);
    ck_assert_int_eq(wm_set_bf16_tile_max_m(0), 0);
    ck_assert_int_eq(wm_bf16_tile_max_m(), cpu);
}
END_TEST

/* The oneDNN primitives weights.c keeps per shape (64 of them): more
 * distinct M than it holds, each product against the same rows taken one
 * at a time; the first M again after it was evicted, and after
 * wm_free_cache(). A primitive served for the wrong shape would give wrong
 * rows (or none). */
START_TEST(test_bf16_prim_cache) {
    ck_assert_int_eq(wm_set_kernels("avx512"), 0);
    int N = 24, K = 96, M0 = wm_bf16_tile_max_m() + 1, Mmax = M0 + 70;
    Mat m = make(PREC_BF16, N, K);
    float *X = malloc(sizeof(float) * (size_t)Mmax * K), *rows = malloc(sizeof(float) * (size_t)Mmax * N);
    float *all = malloc(sizeof(float) * (size_t)Mmax * N);
    for (int i = 0; i < Mmax * K; i++) X[i] = frand() * 2;
    for (int i = 0; i < Mmax; i++) wm_matmul(&m.w, 1, X + (size_t)i * K, K, rows + (size_t)i * N, N, 0, 1);
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 2) wm_free_cache();
        for (int M = M0; M <= (pass ? M0 + 1 : Mmax); M++) {
            for (int acc = 0; acc < 2; acc++) {
                for (int i = 0; i < M * N; i++) all[i] = acc ? -rows[i] : 1e30f;
                wm_matmul(&m.w, M, X, K, all, N, acc, 2);
                for (int i = 0; i < M * N; i++) {
                    float want = acc ? 0 : rows[i];
                    ck_assert_msg(fabsf(all[i] - want) <= 1e-5f * (1 + fabsf(rows[i])),
                                  "pass %d M=%d acc=%d: element %d is %g, not %g", pass, M, acc, i, all[i], want);
                }
            }
        }
    }
    free(X); free(rows); free(all);
    drop(&m);
}
END_TEST

START_TEST(test_names) {
    Precision p;
    ck_assert_int_eq(precision_parse("auto", &p), 0);
    ck_assert_int_eq(p, PREC_AUTO);
    ck_assert_int_eq(precision_resolve(p), PREC_BF16);
    ck_assert_int_eq(precision_parse("int8", &p), 0);
    ck_assert_str_eq(precision_name(p), "int8");
    ck_assert_int_eq(precision_parse("fp16", &p), -1);
    ck_assert_int_eq(precision_parse(NULL, &p), -1);
    ck_assert_int_eq(wm_set_kernels("sse2"), -1);
    ck_assert_int_eq(wm_set_kernels("generic"), 0);
    ck_assert_str_eq(wm_kernels(PREC_BF16), "generic-widen+blis");
    ck_assert_str_eq(wm_kernels(PREC_INT8), "generic");
    ck_assert_int_eq(wm_set_kernels("avx2"), 0);
    ck_assert_str_eq(wm_kernels(PREC_INT8), wk_have_avx2() ? "avx2" : "generic");
    /* avxvnni: int8 on vpdpwssd ymm, everything else AVX2's; without
     * AVX-VNNI (also on AVX-512 CPUs) it falls back to avx2 */
    ck_assert_int_eq(wm_set_kernels("avxvnni"), 0);
    ck_assert_str_eq(wm_kernels(PREC_INT8), wk_have_avxvnni() ? "avxvnni" : wk_have_avx2() ? "avx2" : "generic");
    ck_assert_str_eq(wm_kernels(PREC_BF16), wk_have_avx2() ? "avx2-widen+blis" : "generic-widen+blis");
    ck_assert_str_eq(wm_kernels(PREC_F32), "blis");
    /* an AVX-512 CPU without AVX512_BF16 (Cascade Lake, Ice Lake): bf16
     * widens on the AVX2 code, not in plain C */
    ck_assert_int_eq(wk_mask_features("avx2,sse9"), -1);
    if (wk_have_avx512vnni() && wk_have_avx2()) {
        ck_assert_int_eq(wk_mask_features("avx512bf16"), 0);
        ck_assert(!wk_have_avx512bf16());
        ck_assert_int_eq(wm_set_kernels("auto"), 0);
        ck_assert_str_eq(wm_kernels(PREC_BF16), "avx2-widen+blis");
        ck_assert_str_eq(wm_kernels(PREC_INT8), "avx512vnni");
        ck_assert_int_eq(wk_mask_features(NULL), 0);
        ck_assert_int_eq(wm_set_kernels("auto"), 0);
    }
    ck_assert_uint_eq(wm_bytes(PREC_BF16, 3, 5, 0), 30);
    ck_assert_uint_eq(wm_bytes(PREC_INT8, 3, 5, 1), 15 + 3 * 8);
    ck_assert_uint_eq(wm_bytes(PREC_INT8, 3, 40, 2), 120 + 3 * (4 * 4 + 4));
}
END_TEST

int main(void) {
    blis_setup(2, getenv("GUARDD_TEST_BLIS_ARCH"));
    Suite *s = suite_create("weights");
    TCase *tc = check_case(s, "core", 120);
    tcase_add_loop_test(tc, test_products, 0, N_FAMS);
    tcase_add_test(tc, test_int8_exact);
    tcase_add_test(tc, test_int8_extremes);
    tcase_add_test(tc, test_int8_long_rows);
    tcase_add_test(tc, test_int8_lane_bound);
    tcase_add_test(tc, test_int8_epilogue);
    tcase_add_test(tc, test_int8_quantize_act);
    tcase_add_test(tc, test_int8_quantize);
    tcase_add_test(tc, test_int8_quantize_exact);
    tcase_add_test(tc, test_bf16_split);
    tcase_add_loop_test(tc, test_bf16_rows_independent, 0, 2);
    tcase_add_test(tc, test_bf16_tile_limit);
    tcase_add_test(tc, test_bf16_prim_cache);
    tcase_add_test(tc, test_names);
    return check_run(s);
}
