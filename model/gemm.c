/* gemm.c - BLIS setup (kernel choice, threads) and the Y = X·Wᵀ product,
 * on f32 weights (gemm_xwt) and on bf16 weights widened while BLIS's
 * microkernel panels are packed (gemm_xwt_bf16, at the end).
 *
 * Kernel choice: Debian's BLIS 0.9 picks its kernel set by CPU model and
 * falls back to the slow portable "generic" kernels on CPUs it does not know
 * (e.g. AMD Zen 5), although the CPU runs the AVX-512 or AVX2 kernels fine.
 * BLIS reads env BLIS_ARCH_TYPE (the arch_t number) once, when it
 * initialises, so blis_setup() must run before the first BLIS call:
 *   - an explicit name ("skx", "zen3", "haswell", "generic") is used as is;
 *   - "auto"/NULL keeps a valid BLIS_ARCH_TYPE the user already exported, else
 *     asks BLIS what it would pick (in a short-lived forked child, because the
 *     choice is cached for the life of the process), and when that is
 *     "generic" on x86-64 picks skx (avx512f/dq/bw/vl) or zen3 (avx2+fma).
 * If BLIS was already initialised in this process the variable has no effect:
 * blis_setup() then prints one warning and blis_arch_name() reports the set
 * actually in use, which is always the truth (read back from BLIS).
 */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "blis_quiet.h"
#include "gemm.h"
#include "ops.h"
#include "transformer.h"

static const struct { const char *name; arch_t id; } known_archs[] = {
    {"skx", BLIS_ARCH_SKX}, {"zen3", BLIS_ARCH_ZEN3},
    {"haswell", BLIS_ARCH_HASWELL}, {"generic", BLIS_ARCH_GENERIC},
};
#define N_ARCHS (int)(sizeof known_archs / sizeof known_archs[0])

/* At most this many rows go to gemm_stream instead of BLIS. Measured here
 * (2 threads, skx kernels, W [N, K] f32): lm_head N=128256 K=2048 at M=1:
 * 35 ms vs 359 ms BLIS sup; M=16: 124 ms vs 437 ms BLIS packed; from M=24 on
 * BLIS is as fast or faster. */
#ifndef GEMM_STREAM_MAX_M
#define GEMM_STREAM_MAX_M 16
#endif

static int g_threads;             /* 0 until blis_setup */
static char g_arch[32] = "";      /* read back from BLIS */

static int arch_by_name(const char *name) {
    for (int i = 0; i < N_ARCHS; i++)
        if (!strcmp(name, known_archs[i].name)) return (int)known_archs[i].id;
    return -1;
}

static int arch_by_number(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return -1;
    for (int i = 0; i < N_ARCHS; i++)
        if (v == (long)known_archs[i].id) return (int)v;
    return -1;
}

/* What BLIS would choose on its own, asked in a forked child so this
 * process's one-time choice stays open. -1 if the probe fails. */
static int probe_blis_default(void) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); return -1; }
    if (pid == 0) {
        close(fd[0]);
        bli_init();
        int id = (int)bli_arch_query_id();
        ssize_t w = write(fd[1], &id, sizeof id);
        _exit(w == (ssize_t)sizeof id ? 0 : 1);
    }
    close(fd[1]);
    int id = -1;
    ssize_t r;
    do r = read(fd[0], &id, sizeof id); while (r < 0 && errno == EINTR);
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return r == (ssize_t)sizeof id ? id : -1;
}

/* The best kernel set this CPU can run, by instruction-set features. */
static int best_for_cpu(int fallback) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return (int)BLIS_ARCH_SKX;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (int)BLIS_ARCH_ZEN3;
#endif
    return fallback;
}

static int choose_arch(const char *arch) {
    if (arch && *arch && strcmp(arch, "auto")) {
        int id = arch_by_name(arch);
        if (id >= 0) return id;
        fprintf(stderr, "blis_setup: unknown BLIS arch '%s' (skx, zen3, haswell, generic, auto); using auto\n", arch);
    }
    const char *env = getenv("BLIS_ARCH_TYPE");
    if (env && *env) {
        int id = arch_by_number(env);
        if (id >= 0) return id;
        fprintf(stderr, "blis_setup: ignoring unsupported BLIS_ARCH_TYPE='%.16s'\n", env);
        unsetenv("BLIS_ARCH_TYPE");
    }
    int def = probe_blis_default();
    if (def < 0 || def == (int)BLIS_ARCH_GENERIC) return best_for_cpu(def < 0 ? -1 : def);
    return def;
}

void blis_setup(int threads, const char *arch) {
    int want = choose_arch(arch);
    if (want >= 0) {
        char num[16];
        snprintf(num, sizeof num, "%d", want);
        setenv("BLIS_ARCH_TYPE", num, 1);
    }
    bli_init();
    arch_t got = bli_arch_query_id();
    snprintf(g_arch, sizeof g_arch, "%s", bli_arch_string(got));
    if (want >= 0 && (int)got != want)
        fprintf(stderr, "blis_setup: BLIS was already initialised with '%s' kernels, '%s' not applied "
                "(call blis_setup before any BLIS use)\n", g_arch, bli_arch_string((arch_t)want));
    g_threads = threads > 0 ? threads : omp_get_num_procs();
    bli_thread_set_num_threads(g_threads);
}

const char *blis_arch_name(void) {
    if (!g_arch[0]) {   /* never set up: report (and thereby fix) BLIS's own choice */
        bli_init();
        snprintf(g_arch, sizeof g_arch, "%s", bli_arch_string(bli_arch_query_id()));
    }
    return g_arch;
}

int blis_threads(void) { return g_threads > 0 ? g_threads : omp_get_num_procs(); }

/* Y (+)= X·Wᵀ for a handful of rows: W is streamed from memory exactly once
 * (4 rows at a time, each dotted with every row of X, which stays in cache),
 * so the cost is the memory read of W. BLIS packs W first (about three times
 * the traffic) or, on its sup path, is slower still at M = 1. */
OPS_CLONES static void gemm_stream(int M, int N, int K, const float *X, int ldx, const float *W,
                                   int ldw, float *Y, int ldy, int accumulate, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int n = 0; n < N; n += 4) {
        int nb = N - n < 4 ? N - n : 4;
        const float *w0 = W + (size_t)n * ldw;
        const float *w1 = nb > 1 ? w0 + ldw : w0, *w2 = nb > 2 ? w0 + 2 * (size_t)ldw : w0;
        const float *w3 = nb > 3 ? w0 + 3 * (size_t)ldw : w0;
        for (int i = 0; i < M; i++) {
            const float *x = X + (size_t)i * ldx;
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
            for (int k = 0; k < K; k++) {
                a0 += x[k] * w0[k];
                a1 += x[k] * w1[k];
                a2 += x[k] * w2[k];
                a3 += x[k] * w3[k];
            }
            float acc[4] = {a0, a1, a2, a3}, *y = Y + (size_t)i * ldy + n;
            for (int j = 0; j < nb; j++) y[j] = accumulate ? y[j] + acc[j] : acc[j];
        }
    }
}

void gemm_xwt(int M, int N, int K, const float *X, int ldx, const float *W, int ldw,
              float *Y, int ldy, int accumulate, int threads) {
    if (M <= 0 || N <= 0) return;
    if (M <= GEMM_STREAM_MAX_M) {
        gemm_stream(M, N, K, X, ldx, W, ldw, Y, ldy, accumulate,
                    threads > 0 ? threads : blis_threads());
        return;
    }
    obj_t a, b, c;
    /* BLIS objects take non-const buffers; X and W are only read. */
    bli_obj_create_with_attached_buffer(BLIS_FLOAT, M, K, (void *)X, ldx, 1, &a);
    bli_obj_create_with_attached_buffer(BLIS_FLOAT, N, K, (void *)W, ldw, 1, &b);
    bli_obj_set_onlytrans(BLIS_TRANSPOSE, &b);
    bli_obj_create_with_attached_buffer(BLIS_FLOAT, M, N, Y, ldy, 1, &c);
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(threads > 0 ? threads : blis_threads(), &rntm);
    if (M > 8) bli_rntm_disable_l3_sup(&rntm);
    bli_gemm_ex(&BLIS_ONE, &a, &b, accumulate ? &BLIS_ONE : &BLIS_ZERO, &c, NULL, &rntm);
}

/* ---- bf16 weights: BLIS's microkernel, widened while packing ----------- */

/* One micro-panel: rows [r0, r0 + rows) of a row-major [*, K] operand (f32,
 * or bf16 widened to f32 exactly), columns [k0, k0 + kc), stored as BLIS
 * packs them: dst[k * P + r], rows past `rows` up to P zero. */
static void pack_panel_c(const float *f, const uint16_t *h, size_t ld, int r0, int rows, int P, int k0,
                         int kc, float *dst) {
    for (int r = 0; r < P; r++) {
        float *d = dst + r;
        if (r >= rows) {
            for (int k = 0; k < kc; k++) d[(size_t)k * P] = 0;
        } else if (h) {
            const uint16_t *s = h + (size_t)(r0 + r) * ld + k0;
            for (int k = 0; k < kc; k++) {
                uint32_t u = (uint32_t)s[k] << 16;
                memcpy(d + (size_t)k * P, &u, 4);
            }
        } else {
            const float *s = f + (size_t)(r0 + r) * ld + k0;
            for (int k = 0; k < kc; k++) d[(size_t)k * P] = s[k];
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define T_AVX2 __attribute__((target("avx2,fma")))

/* 8 x 8 f32 transpose: v[i] = row i (8 columns) -> v[j] = column j. */
T_AVX2 static inline void transpose8(__m256 v[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        v[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* pack_panel with AVX2: groups of 8 rows, 8 columns at a time, transposed
 * in registers (the scalar loop wrote one float per step with stride P and
 * cost ~7 % of the product). Columns past a multiple of 8 go the scalar way. */
T_AVX2 static void pack_panel_avx2(const float *f, const uint16_t *h, size_t ld, int r0, int rows,
                                   int P, int k0, int kc, float *dst) {
    int k8 = kc & ~7;
    for (int g = 0; g < P; g += 8) {
        int w = P - g < 8 ? P - g : 8;
        const float *fs[8];
        const uint16_t *hs[8];
        for (int i = 0; i < 8; i++) {
            int r = g + i, live = r < rows && i < w;
            fs[i] = live && f ? f + (size_t)(r0 + r) * ld + k0 : NULL;
            hs[i] = live && h ? h + (size_t)(r0 + r) * ld + k0 : NULL;
        }
        for (int k = 0; k < k8; k += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++) {
                if (hs[i]) {
                    __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(hs[i] + k)));
                    v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
                } else v[i] = fs[i] ? _mm256_loadu_ps(fs[i] + k) : _mm256_setzero_ps();
            }
            transpose8(v);
            float *d = dst + (size_t)k * P + g;
            if (w == 8)
                for (int j = 0; j < 8; j++) _mm256_storeu_ps(d + (size_t)j * P, v[j]);
            else {
                /* P < 8 (one group): every column but the last stores 8
                 * wide, its spill landing on the next column's start, which
                 * the next store rewrites; a narrow group after a full one
                 * (P = 12) would spill onto it, so it copies */
                int wide = g == 0 ? 7 : 0;
                for (int j = 0; j < wide; j++) _mm256_storeu_ps(d + (size_t)j * P, v[j]);
                for (int j = wide; j < 8; j++) {
                    float col[8];
                    _mm256_storeu_ps(col, v[j]);
                    memcpy(d + (size_t)j * P, col, sizeof(float) * (size_t)w);
                }
            }
        }
        for (int k = k8; k < kc; k++)
            for (int i = 0; i < w; i++) {
                float x = 0;
                if (hs[i]) { uint32_t u = (uint32_t)hs[i][k] << 16; memcpy(&x, &u, 4); }
                else if (fs[i]) x = fs[i][k];
                dst[(size_t)k * P + g + i] = x;
            }
    }
}
#endif

typedef void (*PackFn)(const float *, const uint16_t *, size_t, int, int, int, int, int, float *);

static PackFn pack_fn(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return pack_panel_avx2;
#endif
    return pack_panel_c;
}

/* The microkernel and BLIS's block sizes for f32. */
typedef struct {
    sgemm_ukr_ft ukr;
    cntx_t *cntx;
    PackFn pack;
    int mr, nr, pmr, pnr, MC, KC, NC;
} Kern;

/* One operand in BLIS's roles: rows of K values, f32 or bf16, row stride ld. */
typedef struct {
    const float *f;
    const uint16_t *h;
    size_t ld;
} Rows;

/* 64-byte aligned buffer of n floats (aligned_alloc wants a multiple of 64). */
static float *alloc_panels(size_t n) {
    return aligned_alloc(64, (sizeof(float) * n + 63) / 64 * 64);
}

/* Packing buffer sizes (floats) for a product of at most m x n: B's
 * NC x KC block and A's MC x KC block, in packed panels. */
static size_t bbuf_len(const Kern *kn, int n, int K) {
    int nc = n < kn->NC ? (n + kn->nr - 1) / kn->nr * kn->nr : kn->NC;
    return (size_t)nc / kn->nr * kn->pnr * (size_t)(K < kn->KC ? K : kn->KC);
}
static size_t abuf_len(const Kern *kn, int m, int K) {
    int mc = m < kn->MC ? (m + kn->mr - 1) / kn->mr * kn->mr : kn->MC;
    return (size_t)mc / kn->mr * kn->pmr * (size_t)(K < kn->KC ? K : kn->KC);
}

/* C [m, n] (+)= A·Bᵀ on one thread, C at strides rs, cs: BLIS's loops
 * (NC columns, KC depth: pack B into bbuf; MC rows: pack A into abuf;
 * then micro-tiles). */
static void xwt_serial(const Kern *kn, Rows a, Rows b, int m, int n, int K, float *C, inc_t rs,
                       inc_t cs, int accumulate, float *bbuf, float *abuf) {
    int mr = kn->mr, nr = kn->nr, pmr = kn->pmr, pnr = kn->pnr, MC = kn->MC, KC = kn->KC, NC = kn->NC;
    float one = 1.0f, zero = 0.0f;
    for (int j0 = 0; j0 < n; j0 += NC) {
        int nc = n - j0 < NC ? n - j0 : NC, npan = (nc + nr - 1) / nr;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            for (int p = 0; p < npan; p++) {
                int rows = nc - p * nr < nr ? nc - p * nr : nr;
                kn->pack(b.f, b.h, b.ld, j0 + p * nr, rows, pnr, k0, kc, bbuf + (size_t)p * pnr * kc);
            }
            float *beta = accumulate || k0 ? &one : &zero;
            for (int i0 = 0; i0 < m; i0 += MC) {
                int mc = m - i0 < MC ? m - i0 : MC, mpan = (mc + mr - 1) / mr;
                for (int p = 0; p < mpan; p++) {
                    int rows = mc - p * mr < mr ? mc - p * mr : mr;
                    kn->pack(a.f, a.h, a.ld, i0 + p * mr, rows, pmr, k0, kc, abuf + (size_t)p * pmr * kc);
                }
                for (int jp = 0; jp < npan; jp++) {
                    int nn = nc - jp * nr < nr ? nc - jp * nr : nr;
                    float *bp = bbuf + (size_t)jp * pnr * kc;
                    for (int ip = 0; ip < mpan; ip++) {
                        int mm = mc - ip * mr < mr ? mc - ip * mr : mr;
                        float *ap = abuf + (size_t)ip * pmr * kc;
                        auxinfo_t aux;
                        memset(&aux, 0, sizeof aux);
                        int last_i = ip + 1 == mpan;   /* prefetch hints, as BLIS gives them */
                        bli_auxinfo_set_next_a(last_i ? abuf : ap + (size_t)pmr * kc, &aux);
                        bli_auxinfo_set_next_b(last_i && jp + 1 < npan ? bp + (size_t)pnr * kc : bp, &aux);
                        float *c = C + (size_t)(i0 + ip * mr) * (size_t)rs + (size_t)(j0 + jp * nr) * (size_t)cs;
                        kn->ukr(mm, nn, kc, &one, ap, bp, beta, c, rs, cs, &aux, kn->cntx);
                    }
                }
            }
        }
    }
}

/* Threads split W's rows and each runs the whole product on its share with
 * its own packed blocks: no barrier anywhere (each thread packs all of X
 * for its share, ~1/8 of the packing work at the layer shapes). A shared
 * packed W block with the rows of X split instead measured 0.94x f32 and
 * spent ~3 % spinning in its two barriers per block on this shared
 * 2-core machine; BLIS itself splits N for these shapes. */
int gemm_xwt_bf16(int M, int N, int K, const float *X, int ldx, const uint16_t *W, float *Y,
                  int ldy, int accumulate, int threads) {
    if (M <= 0 || N <= 0) return 0;
    if (threads <= 0) threads = blis_threads();
    bli_init();
    Kern kn;
    kn.cntx = bli_gks_query_cntx();
    kn.ukr = (sgemm_ukr_ft)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, kn.cntx);
    kn.pack = pack_fn();
    kn.mr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, kn.cntx);
    kn.nr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, kn.cntx);
    kn.pmr = (int)bli_cntx_get_blksz_max_dt(BLIS_FLOAT, BLIS_MR, kn.cntx);
    kn.pnr = (int)bli_cntx_get_blksz_max_dt(BLIS_FLOAT, BLIS_NR, kn.cntx);
    kn.MC = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MC, kn.cntx);
    kn.KC = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, kn.cntx);
    kn.NC = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NC, kn.cntx);
    kn.pmr = kn.pmr > kn.mr ? kn.pmr : kn.mr;   /* packed panel width (>= mr) */
    kn.pnr = kn.pnr > kn.nr ? kn.pnr : kn.nr;
    kn.MC = kn.MC / kn.mr * kn.mr > 0 ? kn.MC / kn.mr * kn.mr : kn.mr;
    kn.NC = kn.NC / kn.nr * kn.nr > 0 ? kn.NC / kn.nr * kn.nr : kn.nr;
    kn.KC = kn.KC > 0 ? kn.KC : 256;
    /* The kernel writes C in the storage it prefers: rows (Y as it is,
     * A = X, B = W) or columns (Yᵀ = W·Xᵀ: A = W, B = X). */
    int rows_pref = bli_cntx_l3_nat_ukr_prefers_rows_dt(BLIS_FLOAT, BLIS_GEMM_UKR, kn.cntx);
    int step = rows_pref ? kn.nr : kn.mr;   /* W rows go in whole micro-panels */
    int per = ((N + threads - 1) / threads + step - 1) / step * step;
    int wm = rows_pref ? M : per, wn = rows_pref ? per : M;   /* a thread's C */
    /* lengths in whole 64-byte lines: every block starts aligned (the
     * kernels load packed panels with aligned moves) */
    size_t bl = (bbuf_len(&kn, wn, K) + 15) & ~(size_t)15, al = (abuf_len(&kn, wm, K) + 15) & ~(size_t)15;
    /* every buffer first, so that a shortage leaves Y untouched */
    float *buf = alloc_panels((bl + al) * (size_t)threads);
    if (!buf) return -1;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num();
        int w0 = t * per < N ? t * per : N, w1 = w0 + per < N ? w0 + per : N;
        float *bb = buf + (bl + al) * (size_t)t, *ab = bb + bl;
        Rows x = {X, NULL, (size_t)ldx}, w = {NULL, W + (size_t)w0 * K, (size_t)K};
        if (w1 > w0) {
            if (rows_pref) xwt_serial(&kn, x, w, M, w1 - w0, K, Y + w0, ldy, 1, accumulate, bb, ab);
            else xwt_serial(&kn, w, x, w1 - w0, M, K, Y + w0, 1, ldy, accumulate, bb, ab);
        }
    }
    free(buf);
    return 0;
}
