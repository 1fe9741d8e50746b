/* bench_ceiling.c - the highest product rate each precision's kernels could
 * reach on this CPU, from the issue rate of the instructions they are built
 * on, next to f32's FMA: the ceilings the precision table's ratios are to be
 * read against.
 *
 *   bench_ceiling [--threads N]
 *
 * Each instruction runs in 12 independent dependency chains (more than any
 * current core's latency x throughput), one thread per core, timed over
 * ~0.1 s, best of 3; instructions the CPU lacks are skipped. A multiply-add
 * (MAC) is one weight times one activation added to a sum:
 *
 *   f32   vfmadd231ps: 8 (ymm) or 16 (zmm) MACs
 *   bf16  vdpbf16ps zmm (AVX512_BF16): 32 bf16 MACs, but guardd splits each
 *         activation into hi + lo (weights.h), two per weight: 16 MACs
 *         "of f32 fidelity"; without AVX512_BF16 the weights are widened
 *         to f32 (f32's FMA rate at best)
 *   int8  12-bit activations x 9/10-bit weights on int16 operands:
 *         vpdpwssd zmm (AVX512_VNNI) 32 MACs, vpdpwssd ymm (AVX-VNNI) 16,
 *         vpmaddwd ymm + vpaddd (AVX2) 16 per pair
 *   8x8   vpdpbusd zmm, 64 MACs: what 8-bit weights x 8-bit activations
 *         would run at (not used: 3.0e-2 of the logit range on the 1B,
 *         against issue 9's 1e-2)
 *
 * "ceiling" = the precision's MACs/ns over f32 FMA's at the same vector
 * width (zmm for the AVX-512 kernels and BLIS's skx set, ymm for the AVX2
 * ones and BLIS's zen3/haswell sets): the ratio of prefill tokens/s that
 * precision could reach if its kernels and BLIS ran at the same fraction
 * of their peaks. Last, BLIS's own sgemm (M=1024, K=2048, N=8192, --threads
 * threads) with its AVX-512 set skx and its AVX2 set zen3, each as a fraction
 * of the FMA peak of its width: how far f32 itself is from its ceiling, so a
 * precision's measured ratio can be read against ceiling / that fraction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include "gemm.h"
#include "transformer.h"
#include "wkernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define ITERS 1000000L   /* x 12 chains x REP instructions per iteration body */

/* 12 chains of INS on register R (x/y/z) writing registers 2..13, reading
 * 0 and 1: 12 instructions per iteration. */
#define CHAINS(INS, R)                                                                   \
    INS " %%" R "mm0, %%" R "mm1, %%" R "mm2\n\t" INS " %%" R "mm0, %%" R "mm1, %%" R "mm3\n\t"   \
    INS " %%" R "mm0, %%" R "mm1, %%" R "mm4\n\t" INS " %%" R "mm0, %%" R "mm1, %%" R "mm5\n\t"   \
    INS " %%" R "mm0, %%" R "mm1, %%" R "mm6\n\t" INS " %%" R "mm0, %%" R "mm1, %%" R "mm7\n\t"   \
    INS " %%" R "mm0, %%" R "mm1, %%" R "mm8\n\t" INS " %%" R "mm0, %%" R "mm1, %%" R "mm9\n\t"   \
    INS " %%" R "mm0, %%" R "mm1, %%" R "mm10\n\t" INS " %%" R "mm0, %%" R "mm1, %%" R "mm11\n\t" \
    INS " %%" R "mm0, %%" R "mm1, %%" R "mm12\n\t" INS " %%" R "mm0, %%" R "mm1, %%" R "mm13\n\t"
#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
                 "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

/* Each returns seconds for ITERS iterations of 12 instructions (or 12
 * vpmaddwd + vpaddd pairs). Registers start zeroed: the values never
 * matter for throughput (no denormals: zero in, zero out). */
#define LOOP(ASM) do {                                                     \
        __asm__ volatile("vpxor %%xmm0, %%xmm0, %%xmm0\n\t"                \
                         "vpxor %%xmm1, %%xmm1, %%xmm1" ::: CLOBBERS);     \
        double t0 = now();                                                 \
        for (long i = 0; i < ITERS; i++) __asm__ volatile(ASM ::: CLOBBERS); \
        return now() - t0;                                                 \
    } while (0)

__attribute__((target("avx2,fma"), noinline)) static double fma_ymm(void) { LOOP(CHAINS("vfmadd231ps", "y")); }
__attribute__((target("avx512f"), noinline)) static double fma_zmm(void) { LOOP(CHAINS("vfmadd231ps", "z")); }
__attribute__((target("avx512f,avx512bf16"), noinline)) static double dpbf16_zmm(void) {
    LOOP(CHAINS("vdpbf16ps", "z"));
}
__attribute__((target("avx512f,avx512vnni"), noinline)) static double dpwssd_zmm(void) {
    LOOP(CHAINS("vpdpwssd", "z"));
}
__attribute__((target("avx512f,avx512vnni"), noinline)) static double dpbusd_zmm(void) {
    LOOP(CHAINS("vpdpbusd", "z"));
}
__attribute__((target("avx2,avxvnni"), noinline)) static double dpwssd_ymm(void) {
    LOOP(CHAINS("%{vex%} vpdpwssd", "y"));
}
/* The AVX2 tile's step: a product into a temporary, added to an
 * accumulator (6 accumulators, 6 temporaries; 12 pairs an iteration). */
#define MADD(t, a) "vpmaddwd %%ymm0, %%ymm1, %%ymm" #t "\n\tvpaddd %%ymm" #t ", %%ymm" #a ", %%ymm" #a "\n\t"
__attribute__((target("avx2"), noinline)) static double maddwd_ymm(void) {
    LOOP(MADD(8, 2) MADD(9, 3) MADD(10, 4) MADD(11, 5) MADD(12, 6) MADD(13, 7)
         MADD(8, 2) MADD(9, 3) MADD(10, 4) MADD(11, 5) MADD(12, 6) MADD(13, 7));
}

typedef struct {
    const char *name, *use;
    int (*have)(void);
    double (*run)(void);
    int macs;          /* MACs per instruction (pair) at the fidelity guardd needs */
    int ref;           /* the f32 FMA of the same width it is compared with: 0 ymm, 1 zmm */
    double rate;       /* MACs per ns, one core; 0 when absent */
} Probe;

static int have_avx512f(void) { return __builtin_cpu_supports("avx512f"); }

static double best_of_3(double (*run)(void)) {
    double best = 1e30;
    run();   /* warm-up: wakes the wide units */
    for (int r = 0; r < 3; r++) {
        double t = run();
        if (t < best) best = t;
    }
    return best;
}

static double sgemm_gflops(int threads) {
    const int M = 1024, K = 2048, N = 8192;
    float *X = calloc((size_t)M * K, sizeof(float)), *W = calloc((size_t)N * K, sizeof(float)),
          *Y = malloc(sizeof(float) * (size_t)M * N);
    if (!X || !W || !Y) { free(X); free(W); free(Y); return 0; }
    for (size_t i = 0; i < (size_t)M * K; i++) X[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        gemm_xwt(M, N, K, X, K, W, K, Y, N, 0, threads);
        double t = now() - t0;
        if (r && t < best) best = t;   /* first run: warm-up */
    }
    free(X); free(W); free(Y);
    return 2.0 * M * N * K / best * 1e-9;
}

/* sgemm GFLOPS with BLIS kernel set `arch` ("skx", "zen3"), in a forked
 * child: a process's BLIS set is fixed at its first use. 0 on failure. */
static double sgemm_in_child(const char *arch, int threads) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); return 0; }
    if (pid == 0) {
        close(fd[0]);
        blis_setup(threads, arch);
        double g = strcmp(blis_arch_name(), arch) ? 0 : sgemm_gflops(threads);
        _exit(write(fd[1], &g, sizeof g) == (ssize_t)sizeof g ? 0 : 1);
    }
    close(fd[1]);
    double g = 0;
    if (read(fd[0], &g, sizeof g) != (ssize_t)sizeof g) g = 0;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return g;
}

int main(int argc, char **argv) {
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else { fprintf(stderr, "usage: bench_ceiling [--threads N]\n"); return 2; }
    }
    if (threads < 1 || threads > 1024) { fprintf(stderr, "bench_ceiling: bad --threads\n"); return 2; }
    if (!wk_have_avx2()) { printf("bench_ceiling: no AVX2 + FMA, nothing to measure\n"); return 0; }
    Probe p[] = {
        {"vfmadd231ps ymm", "f32 (AVX2)", wk_have_avx2, fma_ymm, 8, 0, 0},
        {"vfmadd231ps zmm", "f32 (AVX-512)", have_avx512f, fma_zmm, 16, 1, 0},
        {"vdpbf16ps zmm", "bf16 hi+lo split", wk_have_avx512bf16, dpbf16_zmm, 16, 1, 0},
        {"vpdpwssd zmm", "int8 avx512vnni", wk_have_avx512vnni, dpwssd_zmm, 32, 1, 0},
        {"vpdpwssd ymm (vex)", "int8 avxvnni", wk_have_avxvnni, dpwssd_ymm, 16, 0, 0},
        {"vpmaddwd+vpaddd ymm", "int8 avx2", wk_have_avx2, maddwd_ymm, 16, 0, 0},
        {"vpdpbusd zmm", "8x8 bits (unused)", wk_have_avx512vnni, dpbusd_zmm, 64, 1, 0},
    };
    int n = (int)(sizeof p / sizeof p[0]);
    printf("bench_ceiling: one core; 12 independent chains per instruction, best of 3;\n"
           "ceiling = MACs/ns over f32 FMA's at the same vector width\n");
    printf("%-20s %-18s %8s %9s %8s\n", "instruction", "used by", "ns/inst", "MACs/ns", "ceiling");
    for (int i = 0; i < n; i++) {
        if (!p[i].have()) { printf("%-20s %-18s %8s\n", p[i].name, p[i].use, "absent"); continue; }
        double ns = best_of_3(p[i].run) / (ITERS * 12.0) * 1e9;
        p[i].rate = p[i].macs / ns;
        printf("%-20s %-18s %8.3f %9.1f %7.2fx\n", p[i].name, p[i].use, ns, p[i].rate,
               p[i].rate / p[p[i].ref].rate);
    }
    /* BLIS at each width guardd compares against: skx (zmm) where the CPU
     * has AVX-512, zen3 (ymm: what an AVX2-only CPU runs) everywhere. */
    const struct { const char *arch; int ref; } sets[] = {{"skx", 1}, {"zen3", 0}};
    for (int i = 0; i < 2; i++) {
        if (!p[sets[i].ref].rate) continue;
        double g = sgemm_in_child(sets[i].arch, threads);
        double peak = 2.0 * p[sets[i].ref].rate * threads;   /* GFLOPS: 2 flops a MAC, a core a thread */
        if (g > 0)
            printf("BLIS sgemm (%s) 1024x2048x8192, %d threads: %.0f GFLOPS = %.0f %% of %s f32 FMA peak (%.0f)\n",
                   sets[i].arch, threads, g, 100.0 * g / peak, sets[i].ref ? "zmm" : "ymm", peak);
        else
            printf("BLIS sgemm (%s): could not run\n", sets[i].arch);
    }
    return 0;
}
