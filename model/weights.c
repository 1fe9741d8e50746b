/* weights.c - stored forms of weight matrices and their product
 * (contract: weights.h). bf16: small M goes to the streaming kernels
 * (wkernels.c), large M to oneDNN's bf16 matmul or to BLIS on f32 tiles
 * widened from bf16. int8: the integer kernels of wkernels_i8.c, every M.
 *
 * bf16 with bf16 dot products: every activation goes in as two bf16, hi =
 * bf16(x) and lo = bf16(x - hi), and the product is W·hi + W·lo. Hi alone
 * (one bf16 product) is what bf16 inference usually does; measured on the
 * full-shape 1B fixture against f32 (4 x 64 tokens) it is 3.9e-3 of the
 * logit range off, hi + lo 6.5e-6; hi alone in a single matrix kind (the
 * rest split): qkv 2.8e-3, o 1.7e-3, gate/up 1.9e-3, down 1.2e-3, lm_head
 * 1.0e-3; gate/up and down together 2.1e-3. So every product takes lo.
 * The price: vdpbf16ps and a 512-bit f32 FMA both issue 2 per cycle on the
 * CPUs measured (Zen 5), so two bf16 products cost what one f32 product
 * does: bf16's gain is the halved memory and the memory-bound decode, not
 * compute-bound prefill.
 *
 * Small M (decode, short suffixes) runs on this module's own 4 x 4 tile
 * kernel (wkernels.c), whose summation order never depends on M; large M
 * on oneDNN's bf16 matmul, twice (hi, then lo added by a sum post-op).
 * Where they cross depends on the CPU (wm_bf16_tile_max_m):
 *   Zen 5 (2 threads, quiet, X[M, K]·W[N, K] over one layer's four
 *   matrices, GFLOP/s oneDNN vs tile, two runs): M = 17: 113-129 vs 89-95,
 *   32: 157-177 vs 117-123, 64: 233-241 vs 126-136, 256: 308-324 vs 136-139;
 *   at M = 1024, 321 vs 281 (K = 2048, N = 16384) and 275 vs 151 (K =
 *   8192). So oneDNN from M = 17 on: limit 16, which keeps the decode steps
 *   (M <= 16, W read once) on the tile kernel.
 *   Zen 4 (AVX-512 on 256-bit units; one thread, CPU time, one layer's qkv
 *   + o + gate/up + down) tile / oneDNN time was 0.70 at M = 17, 0.76 at 32,
 *   0.88-0.90 at 64, 0.95 at 96, 0.96 at 128, 1.00 at 192, 1.01-1.07 at 256
 *   and 1.11-1.19 at 1024; 2 threads on a busy machine, 0.75 at M = 32 and
 *   64, 0.79 at 96: limit 64 on AMD family 19h (Zen 4; Zen 3 has no
 *   AVX512_BF16).
 * oneDNN pays a per-call cost that does not shrink with M (its copy of W
 * into its own layout, per run, and the hi/lo copies), which the tile
 * kernel does not; on Zen 5 its kernels win anyway. Intel's AVX512_BF16
 * CPUs get oneDNN's own tuning (and AMX) from M = 17 on.
 * oneDNN's summation order changes with M, which
 * with hi alone made a sequence's logits depend on its batch (a rounding to
 * bf16 flipped by a last-bit difference upstream: 7.7e-4 of the logit
 * range); with lo carrying what hi's rounding dropped, a flipped rounding
 * moves the sum by ~2^-16 of a value, and batched == one at a time holds to
 * f32 rounding (check_transformer, check_prefix_reuse: 1e-5).
 *
 * int8 no longer runs on oneDNN: its integer matmul (2.6) takes 8-bit
 * activations, which alone cost 2.8e-2 of the logit range on the 1B
 * (weights.h). The int16 tile kernel measured as fast as the bf16 one
 * (X[256, 8192]·W[8192, 2048], one thread, busy machine: 128 vs 147 ms).
 */
#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bf16.h"
#include "gemm.h"
#include "weights.h"
#include "wkernels.h"
#include "wkernels_i8.h"

#define STREAM_MAX_M 16     /* as gemm.c: streaming kernels up to here */

/* Slowest first: a forced family falls back to the best one below it.
 * FAM_AVXVNNI is FAM_AVX2 with int8 on AVX-VNNI (every other precision
 * runs its AVX2 code); AVX-512 CPUs need not have AVX-VNNI (Zen 4, Ice
 * Lake do not), so it is only chosen by name on those that do. */
typedef enum { FAM_GENERIC = 0, FAM_AVX2, FAM_AVXVNNI, FAM_AVX512, N_FAM } Family;

static const char *const family_names[N_FAM] = {"generic", "avx2", "avxvnni", "avx512"};
static int g_family = -1;           /* -1: not chosen yet */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static Family best_family(void) {
    if (wk_have_avx512bf16() || wk_have_avx512vnni()) return FAM_AVX512;
    if (wk_have_avxvnni()) return FAM_AVXVNNI;
    if (wk_have_avx2()) return FAM_AVX2;
    return FAM_GENERIC;
}

static int family_by_name(const char *s) {
    if (!s || !*s || !strcmp(s, "auto")) return (int)best_family();
    if (!strcmp(s, "avxvnni") && !wk_have_avxvnni()) s = "avx2";   /* e.g. an AVX-512 CPU without it */
    for (int i = 0; i < N_FAM; i++)
        if (!strcmp(s, family_names[i])) {
            int best = (int)best_family();
            return i < best ? i : best;
        }
    return -1;
}

int wm_set_kernels(const char *family) {
    int f = family_by_name(family);
    if (f < 0) return -1;
    pthread_mutex_lock(&g_mu);
    g_family = f;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static Family family(void) {
    pthread_mutex_lock(&g_mu);
    if (g_family < 0) {
        const char *env = getenv("GUARDD_KERNELS");
        int f = family_by_name(env);
        if (f < 0) {
            fprintf(stderr, "weights: unknown GUARDD_KERNELS='%.20s' (auto, avx512, avxvnni, avx2, generic); "
                    "using auto\n", env);
            f = (int)best_family();
        }
        g_family = f;
    }
    int f = g_family;
    pthread_mutex_unlock(&g_mu);
    return (Family)f;
}

/* Which path each precision takes in the current family. */
static int bf16_dot(void) { return family() == FAM_AVX512 && wk_have_avx512bf16(); }
/* The bf16 tile kernel's row limit (weights.h): 64 on AMD family 19h,
 * 16 elsewhere; 0 in g_tile_max_m means "not chosen yet". */
static int g_tile_max_m;

static int cpu_tile_max_m(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_is("amd") && __builtin_cpu_is("amdfam19h")) return 64;
#endif
    return 16;
}

int wm_bf16_tile_max_m(void) {
    int m = __atomic_load_n(&g_tile_max_m, __ATOMIC_RELAXED);
    if (!m) {
        m = cpu_tile_max_m();
        __atomic_store_n(&g_tile_max_m, m, __ATOMIC_RELAXED);
    }
    return m;
}

int wm_set_bf16_tile_max_m(int m) {
    if (m != 0 && (m < 16 || m > 4096)) return -1;
    __atomic_store_n(&g_tile_max_m, m ? m : cpu_tile_max_m(), __ATOMIC_RELAXED);
    return 0;
}

/* AVX2 code for bf16 without dot products: in the AVX2 families, and in the
 * AVX-512 one on CPUs without AVX512_BF16 (Cascade Lake, Ice Lake servers),
 * which would otherwise widen their decode steps in plain C. */
static int avx2_code(void) {
    Family f = family();
    return f == FAM_AVX2 || f == FAM_AVXVNNI || (f == FAM_AVX512 && wk_have_avx2());
}

/* int8: vpdpwssd zmm with AVX512_VNNI, vpdpwssd ymm with AVX-VNNI,
 * vpmaddwd on any AVX2 CPU. */
static WkI8Family i8_family(void) {
    switch (family()) {
    case FAM_AVX512:
        return wk_have_avx512vnni() ? WK_I8_AVX512 : wk_have_avxvnni() ? WK_I8_AVXVNNI : WK_I8_AVX2;
    case FAM_AVXVNNI: return WK_I8_AVXVNNI;
    case FAM_AVX2: return WK_I8_AVX2;
    default: return WK_I8_GENERIC;
    }
}

const char *wm_kernels(Precision p) {
    switch (precision_resolve(p)) {
    case PREC_BF16:
        if (bf16_dot()) return "avx512bf16-split+onednn";
        return avx2_code() ? "avx2-widen+blis" : "generic-widen+blis";
    case PREC_INT8: {
        static const char *const names[] = {"generic", "avx2", "avx512vnni", "avxvnni"};
        return names[i8_family()];
    }
    default:
        return "blis";
    }
}

WeightMatrix wm_f32(float *w, int rows, int cols) {
    WeightMatrix m = {.prec = PREC_F32, .rows = rows, .cols = cols, .f32 = w};
    return m;
}

size_t wm_bytes(Precision p, size_t rows, size_t cols, int lo_bits) {
    switch (precision_resolve(p)) {
    case PREC_BF16: return rows * cols * 2;
    case PREC_INT8:
        return rows * cols + rows * ((size_t)wm_lo_words((int)cols, lo_bits) * sizeof(uint32_t) + sizeof(float));
    default: return rows * cols * 4;
    }
}

void wm_round_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

int wm_lo_words(int k, int lo_bits) { return lo_bits * WK_I8_LO_WORDS(k); }

/* 32 values (one word of each low-bit plane) at a time: the rounding loop
 * vectorizes, and each plane's word is built in a register and stored once
 * (setting bits in memory one value at a time made int8 loads of the 1B
 * take ~8 s on 2 threads). */
float wm_quantize_row(const float *src, int k, int lo_bits, int8_t *q, uint32_t *lo) {
    float amax = 0;
    for (int i = 0; i < k; i++) {
        float a = fabsf(src[i]);
        amax = a > amax ? a : amax;
    }
    int vmax = WK_I8_W_MAX(lo_bits), words = WK_I8_LO_WORDS(k);
    float scale = amax > 0 ? amax / (float)vmax : 1.0f, inv = 1.0f / scale;
    const float big = 12582912.0f;   /* rounds to nearest even, inline (as wkernels_i8.c) */
    const float top = (float)vmax, bottom = (float)-vmax;
    int32_t bias = 128 << lo_bits;   /* v + bias >= 0, so the shift below is a floor */
    for (int i0 = 0, w = 0; i0 < k; i0 += 32, w++) {
        int n = k - i0 < 32 ? k - i0 : 32;
        int32_t v[32];
        for (int j = 0; j < n; j++) {
            float t = src[i0 + j] * inv;
            t = t < top ? t : top;
            t = t > bottom ? t : bottom;
            v[j] = (int32_t)((t + big) - big);
        }
        uint32_t plane[2] = {0, 0};
        for (int j = 0; j < n; j++) {
            int32_t h = ((v[j] + bias) >> lo_bits) - 128;   /* floor(v / 2^B): -128..127 */
            uint32_t l = (uint32_t)(v[j] - h * (1 << lo_bits));
            q[i0 + j] = (int8_t)h;
            plane[0] |= (l & 1u) << j;
            plane[1] |= ((l >> 1) & 1u) << j;
        }
        for (int p = 0; p < lo_bits; p++) lo[p * words + w] = plane[p];
    }
    return scale;
}

void wm_row(const WeightMatrix *w, int r, float *out) {
    size_t K = (size_t)w->cols, off = (size_t)r * K;
    switch (w->prec) {
    case PREC_BF16:
        for (size_t k = 0; k < K; k++) out[k] = bf16_to_f32(w->bf16[off + k]);
        break;
    case PREC_INT8:
        for (size_t k = 0; k < K; k++)
            out[k] = (float)wk_i8_weight(w->q, w->lo, w->lo_bits, (int)K, r, (int)k) * w->scale[r];
        break;
    default:
        memcpy(out, w->f32 + off, K * sizeof(float));
    }
}

/* ---- oneDNN (large-M bf16) ------------------------------------------- */

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;

/* Engine and stream, made once. */
static int dnnl_ready(void) {
    pthread_mutex_lock(&g_mu);
    if (!g_engine && dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) g_engine = NULL;
    if (g_engine && !g_stream &&
        dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success)
        g_stream = NULL;
    int ok = g_engine && g_stream;
    pthread_mutex_unlock(&g_mu);
    return ok;
}

/* A oneDNN matmul Y (+)= X·Wᵀ: bf16 X [M, K] contiguous, bf16 W [N, K] read
 * in the checkpoint's own layout (a K x N matrix with strides {1, K}), f32 Y
 * at row stride ldy; accumulate adds into Y (sum post-op). NULL if oneDNN
 * has no implementation. Made through prim_get() below. */
static dnnl_primitive_t onednn_bf16_prim(int M, int N, int K, int ldy, int accumulate) {
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {M, K}, as = {K, 1}, bd = {K, N}, bs = {1, K}, cd = {M, N}, cs = {ldy, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    if (dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_bf16, as) ||
        dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_bf16, bs) ||
        dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs) ||
        dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) || dnnl_primitive_attr_create(&attr))
        return NULL;
    if (!accumulate || (!dnnl_post_ops_create(&po) && !dnnl_post_ops_append_sum(po, 1.0f) &&
                        !dnnl_primitive_attr_set_post_ops(attr, po)))
        if (!dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL) && dnnl_primitive_create(&p, pd))
            p = NULL;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return p;
}

/* Primitives made here are kept, per shape (M, N, K, ldy, accumulate), in
 * a small cache this module owns. Without it every product made two
 * primitives and relied on oneDNN's process-wide primitive cache: ~3.4 us a
 * primitive from that cache, but ~0.3-0.5 ms of kernel generation a
 * primitive when it is off or full (DNNL_PRIMITIVE_CACHE_CAPACITY=0;
 * X[M, 2048]·W[2048, 2048], 2 threads, Zen 5), i.e. ~60 ms per forward
 * pass of the 1B. M stays a compile-time dimension: oneDNN 2.6 serves a
 * runtime M (DNNL_RUNTIME_DIM_VAL) with its gemm:jit kernel instead of
 * brgemm, 1.8x (M = 1024) to 2.4x (M = 17) slower in the same measurement.
 * M follows the batch's token count, so the cache is bounded: PRIM_CACHE
 * entries, the least recently used one not being run replaced. An entry is
 * held while it runs (refs), so a thread never destroys a primitive another
 * one is executing; when every entry is held, a primitive is made for the
 * call alone. */
#define PRIM_CACHE 64

typedef struct {
    int M, N, K, ldy, accumulate;
    dnnl_primitive_t p;
    int refs;
    unsigned long used;    /* tick of the last prim_get, for LRU */
} PrimEntry;

static PrimEntry g_prims[PRIM_CACHE];
static unsigned long g_prim_tick;
static pthread_mutex_t g_prim_mu = PTHREAD_MUTEX_INITIALIZER;

/* A primitive for the shape, from the cache or made; *slot is its entry
 * (held: pass it to prim_put) or -1 for a primitive the caller destroys.
 * NULL if oneDNN has no implementation. */
static dnnl_primitive_t prim_get(int M, int N, int K, int ldy, int accumulate, int *slot) {
    pthread_mutex_lock(&g_prim_mu);
    int victim = -1;
    for (int i = 0; i < PRIM_CACHE; i++) {
        PrimEntry *e = &g_prims[i];
        if (e->p && e->M == M && e->N == N && e->K == K && e->ldy == ldy && e->accumulate == accumulate) {
            e->refs++;
            e->used = ++g_prim_tick;
            *slot = i;
            pthread_mutex_unlock(&g_prim_mu);
            return e->p;
        }
        if (!e->refs && (victim < 0 || !e->p || (g_prims[victim].p && e->used < g_prims[victim].used)))
            victim = i;
    }
    dnnl_primitive_t old = NULL;
    if (victim >= 0) {   /* emptied and reserved while the new one is made, outside the lock */
        old = g_prims[victim].p;
        g_prims[victim] = (PrimEntry){.refs = 1};
    }
    pthread_mutex_unlock(&g_prim_mu);
    if (old) dnnl_primitive_destroy(old);
    dnnl_primitive_t p = onednn_bf16_prim(M, N, K, ldy, accumulate);
    *slot = p ? victim : -1;
    if (victim < 0) return p;
    pthread_mutex_lock(&g_prim_mu);
    if (p) g_prims[victim] = (PrimEntry){M, N, K, ldy, accumulate, p, 1, ++g_prim_tick};
    else g_prims[victim].refs = 0;
    pthread_mutex_unlock(&g_prim_mu);
    return p;
}

static void prim_put(dnnl_primitive_t p, int slot) {
    if (!p) return;
    if (slot < 0) {
        dnnl_primitive_destroy(p);
        return;
    }
    pthread_mutex_lock(&g_prim_mu);
    g_prims[slot].refs--;
    pthread_mutex_unlock(&g_prim_mu);
}

void wm_free_cache(void) {
    pthread_mutex_lock(&g_prim_mu);
    for (int i = 0; i < PRIM_CACHE; i++)
        if (g_prims[i].p && !g_prims[i].refs) {
            dnnl_primitive_destroy(g_prims[i].p);
            g_prims[i] = (PrimEntry){0};
        }
    pthread_mutex_unlock(&g_prim_mu);
}

/* Runs p on X, W, Y (the shapes it was made for). 0 or -1. */
static int onednn_bf16_run(dnnl_primitive_t p, int M, int N, int K, const uint16_t *X,
                           const uint16_t *W, float *Y, int ldy, int threads) {
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {M, K}, as = {K, 1}, bd = {K, N}, bs = {1, K}, cd = {M, N}, cs = {ldy, 1};
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    int rc = -1;
    if (!dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_bf16, as) &&
        !dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_bf16, bs) &&
        !dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs) &&
        !dnnl_memory_create(&ma, &a, g_engine, (void *)X) &&
        !dnnl_memory_create(&mb, &b, g_engine, (void *)W) && !dnnl_memory_create(&mc, &c, g_engine, Y)) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
        omp_set_num_threads(threads);
        rc = dnnl_primitive_execute(p, g_stream, 3, args) || dnnl_stream_wait(g_stream) ? -1 : 0;
    }
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    return rc;
}

/* ---- bf16 ------------------------------------------------------------- */

/* BLIS's f32 microkernel on W widened while it is packed (gemm.h): memory
 * stays halved, speed that of f32. It replaced BLIS calls on 256-row f32
 * tiles widened first, which cost a second pass over every tile and
 * repacked X for each one: 0.82-0.92x f32's rate on the layer shapes with
 * BLIS's AVX2 kernels (M = 1024, 2 threads, Zen 5 forced to zen3). */
static void bf16_widen_blis(const WeightMatrix *w, int M, const float *X, int ldx, float *Y,
                            int ldy, int accumulate, int threads) {
    int K = w->cols, N = w->rows;
    if (gemm_xwt_bf16(M, N, K, X, ldx, w->bf16, Y, ldy, accumulate, threads))
        /* no room for the packing buffers: the streaming kernel needs none */
        wk_bf16_widen_generic(M, N, K, X, ldx, w->bf16, Y, ldy, accumulate, threads);
}

/* Large M: hi and lo as two plain bf16 matrices, two oneDNN products (Y
 * (+)= W·hi, then Y += W·lo). Both primitives are made before anything is
 * written, so -1 (no memory, no oneDNN kernel) leaves Y as it was. */
static int bf16_split_onednn(const WeightMatrix *w, int M, const float *X, int ldx, float *Y,
                             int ldy, int accumulate, int threads) {
    int K = w->cols, N = w->rows;
    if (!dnnl_ready()) return -1;
    int s1 = -1, s2 = -1;
    dnnl_primitive_t first = prim_get(M, N, K, ldy, accumulate, &s1);
    dnnl_primitive_t second = first ? (accumulate ? first : prim_get(M, N, K, ldy, 1, &s2)) : NULL;
    size_t n = (size_t)M * K;
    uint16_t *hi = second ? malloc(sizeof(uint16_t) * n * 2) : NULL;
    int rc = -1, oom = 0;
    if (hi) {
        uint16_t *lo = hi + n;
        int ld2 = wk_bf16_split_ld(K);
        /* each row packed by the tile kernel's own split (same bits, inf and
         * NaN kept), then its 32-column blocks copied out as hi and lo */
#pragma omp parallel num_threads(threads)
        {
            uint16_t *row = malloc(sizeof(uint16_t) * (size_t)ld2);
#pragma omp for schedule(static)
            for (int m = 0; m < M; m++) {
                if (!row) continue;
                wk_bf16_split_row(X + (size_t)m * ldx, K, row);
                for (int k0 = 0; k0 < K; k0 += 32) {
                    size_t len = sizeof(uint16_t) * (size_t)(K - k0 < 32 ? K - k0 : 32);
                    memcpy(hi + (size_t)m * K + k0, row + 2 * k0, len);
                    memcpy(lo + (size_t)m * K + k0, row + 2 * k0 + 32, len);
                }
            }
            if (!row) {
#pragma omp atomic write
                oom = 1;
            }
            free(row);
        }
        rc = oom ? -1 : onednn_bf16_run(first, M, N, K, hi, w->bf16, Y, ldy, threads);
        /* a failed run after the first wrote Y cannot be taken back */
        if (!rc && onednn_bf16_run(second, M, N, K, lo, w->bf16, Y, ldy, threads)) {
            fprintf(stderr, "weights: oneDNN bf16 product failed midway\n");
            abort();
        }
    }
    free(hi);
    prim_put(first, s1);
    if (second != first) prim_put(second, s2);
    return rc;
}

static void bf16_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
                        int accumulate, int threads) {
    int K = w->cols, N = w->rows;
    if (!bf16_dot()) {
        if (M > STREAM_MAX_M) bf16_widen_blis(w, M, X, ldx, Y, ldy, accumulate, threads);
        else if (avx2_code())
            wk_bf16_widen_avx2(M, N, K, X, ldx, w->bf16, Y, ldy, accumulate, threads);
        else wk_bf16_widen_generic(M, N, K, X, ldx, w->bf16, Y, ldy, accumulate, threads);
        return;
    }
    if (M > wm_bf16_tile_max_m() && !bf16_split_onednn(w, M, X, ldx, Y, ldy, accumulate, threads)) return;
    int ldx2 = wk_bf16_split_ld(K);
    uint16_t *xs = malloc(sizeof(uint16_t) * (size_t)M * ldx2);
    if (!xs) {
        bf16_widen_blis(w, M, X, ldx, Y, ldy, accumulate, threads);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int m = 0; m < M; m++) wk_bf16_split_row(X + (size_t)m * ldx, K, xs + (size_t)m * ldx2);
    wk_bf16_dot_avx512(M, N, K, xs, w->bf16, Y, ldy, accumulate, threads);
    free(xs);
}

/* ---- int8 ------------------------------------------------------------- */


void wm_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
               int accumulate, int threads) {
    if (M <= 0 || w->rows <= 0) return;
    if (threads <= 0) threads = blis_threads();
    switch (w->prec) {
    case PREC_BF16: bf16_matmul(w, M, X, ldx, Y, ldy, accumulate, threads); break;
    case PREC_INT8:
        wk_i8_matmul(i8_family(), M, w->rows, w->cols, X, ldx, w->q, w->lo, w->lo_bits, w->scale,
                     Y, ldy, accumulate, threads);
        break;
    default: gemm_xwt(M, w->rows, w->cols, X, ldx, w->f32, w->cols, Y, ldy, accumulate, threads);
    }
}
