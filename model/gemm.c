/* gemm.c - BLIS setup (kernel choice, threads) and the Y = X·Wᵀ product.
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
