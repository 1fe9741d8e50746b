/* bench_precision.c - the weights' precisions side by side on one model:
 * load time, peak RSS, prefill and decode speed, and how far each one's
 * logits and P(unsafe) are from f32's, all in one run so ratios are fair.
 *
 *   bench_precision [--model DIR] [--threads N] [--reps N] [--precisions f32,bf16,int8]
 *                   [--shape BxL]
 * Model directory: --model, else env GUARDD_BENCH_MODEL (tools/bench.sh sets
 * it to the full-shape Llama Guard 3 1B fixture).
 *
 * Each precision runs in its own forked child (so VmHWM, the peak RSS with
 * the load included, is that precision's alone): load, then 16 sequences of
 * 64 random tokens as one batch (prefill tokens/s, best of --reps after a
 * warm-up; their last-position logits are kept), then decode steps of the
 * 16 sequences one token each (M = 16 rows through every layer and the
 * lm_head; best of 3 after a warm-up). --shape BxL runs B sequences of L
 * tokens instead (B <= 64; decode steps then have M = B), e.g. 1x32 for the
 * short products of a lone event's suffix. The first precision listed is the
 * reference, normally f32 (for a model whose f32 form does not fit in memory,
 * such as the 8B, list bf16 or int8 first). f32 as the reference
 * (it agrees with a float64 implementation to ~1e-6 of the logit range,
 * tests/t_numerics.sh): logit error = max |logit - f32 logit| / (max - min of
 * the f32 logits) over the 16 sequences; dP = max |P(unsafe) - f32's|, where
 * P(unsafe) is the softmax probability of token 39257 ("unsafe") at the last
 * position, as the classifier scores it. The kernels are named per row
 * (weights.h); GUARDD_KERNELS forces a family as everywhere (tools/bench.sh:
 * BENCH_KERNELS="auto avx2" runs the table once per family), and the title
 * says so ("AVX2 kernels forced on <cpu>") with the CPU's model and the
 * instruction sets the kernel choice depends on.
 * With GUARDD_KERNELS=avx2 or avxvnni (AVX2 code but for int8's vpdpwssd
 * ymm: what an AVX-VNNI CPU without AVX-512 runs) on a CPU that has AVX2, BLIS (f32, and the engine
 * under bf16's widened tiles) is forced to its AVX2 kernel set "zen3" as
 * well, what Debian's BLIS runs on an AVX2-only Zen 3: GUARDD_KERNELS alone
 * does not reach BLIS, which on an AVX-512 CPU would keep its AVX-512 "skx"
 * kernels and make f32 (the reference) faster than on any AVX2 machine.
 * BLIS 0.9 honours env BLIS_ARCH_TYPE, which blis_setup() sets (gemm.c);
 * measured here (Zen 5, sgemm M=1024 K=2048 N=2048, 2 threads): skx 293,
 * zen3 182, haswell 183 GFLOP/s. GUARDD_BENCH_BLIS_ARCH names another set
 * ("skx", "zen3", "haswell", "generic", "auto"). The title names the BLIS
 * set in use. "load s" is model_load's
 * time, "fill s" the part of it spent allocating and faulting in the
 * weights' memory (on a VM, memory the host has to back first).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "gemm.h"
#include "model.h"
#include "transformer.h"
#include "weights.h"

#define B_MAX 64
/* sequences per batch and prompt tokens each (--shape BxL) */
static int B = 16, L = 64;
#define UNSAFE_ID 39257
#define MAX_PREC 3

typedef struct {
    double load_s, fill_s, prefill_s, decode_s;
    long rss_kb;
    double weight_gb;
    char kernels[48];
    int ok;
} Result;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double forward(Transformer *t, SeqInput *s, int n) {
    char err[256];
    double t0 = now();
    if (transformer_forward(t, s, n, err, sizeof err) != 0) {
        fprintf(stderr, "bench_precision: %s\n", err);
        exit(1);
    }
    return now() - t0;
}

/* The child: everything for one precision; logits of the prefill to lpath. */
static Result run_one(const char *dir, Precision p, int threads, int reps, const char *lpath) {
    Result r = {0};
    char err[512];
    Model *m = model_load_precision(dir, p, err, sizeof err);
    if (!m) { fprintf(stderr, "bench_precision: %s\n", err); exit(1); }
    r.load_s = m->load_seconds;
    r.fill_s = m->load_fill_seconds;
    r.weight_gb = m->weight_bytes / 1e9;
    snprintf(r.kernels, sizeof r.kernels, "%s", m->kernels);
    int V = m->cfg.vocab_size;
    Transformer *t = transformer_new(m, threads);
    int *tok = malloc(sizeof(int) * B * (L + 1));
    float *logits = malloc(sizeof(float) * (size_t)B * V);
    KVCache *kv[B_MAX];
    SeqInput s[B_MAX];
    if (!t || !tok || !logits) { fprintf(stderr, "bench_precision: out of memory\n"); exit(1); }
    unsigned x = 12345;
    for (int i = 0; i < B * (L + 1); i++) { x = x * 1103515245u + 12345u; tok[i] = (int)((x >> 8) % (unsigned)V); }
    for (int b = 0; b < B; b++) {
        if (!(kv[b] = kv_new(&m->cfg, L + 8, NULL))) { fprintf(stderr, "bench_precision: kv_new\n"); exit(1); }
        s[b] = (SeqInput){tok + b * (L + 1), L, kv[b], 1, logits + (size_t)b * V};
    }
    r.prefill_s = 1e30;
    for (int rep = 0; rep <= reps; rep++) {
        for (int b = 0; b < B; b++) kv_truncate(kv[b], 0);
        double dt = forward(t, s, B);
        if (rep && dt < r.prefill_s) r.prefill_s = dt;
    }
    FILE *f = fopen(lpath, "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)B * V, f) != (size_t)B * V || fclose(f)) {
        fprintf(stderr, "bench_precision: cannot write %s\n", lpath);
        exit(1);
    }
    r.decode_s = 1e30;
    for (int rep = 0; rep <= 3; rep++) {
        for (int b = 0; b < B; b++) {
            kv_truncate(kv[b], L);
            s[b] = (SeqInput){tok + b * (L + 1) + L, 1, kv[b], 1, logits + (size_t)b * V};
        }
        double dt = forward(t, s, B);
        if (rep && dt < r.decode_s) r.decode_s = dt;
    }
    r.rss_kb = model_process_peak_rss_kb();
    r.ok = 1;
    for (int b = 0; b < B; b++) kv_free(kv[b]);
    free(tok);
    free(logits);
    transformer_free(t);
    model_free(m);
    return r;
}

static float *read_logits(const char *path, size_t n) {
    float *v = malloc(sizeof(float) * n);
    FILE *f = fopen(path, "rb");
    if (!v || !f || fread(v, sizeof(float), n, f) != n) {
        if (f) fclose(f);
        free(v);
        return NULL;
    }
    fclose(f);
    return v;
}

static double p_unsafe(const float *l, int V) {
    double mx = l[0], sum = 0;
    for (int i = 1; i < V; i++) if (l[i] > mx) mx = l[i];
    for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
    return exp((double)l[UNSAFE_ID < V ? UNSAFE_ID : V - 1] - mx) / sum;
}

/* Worst relative logit error and largest |dP(unsafe)| of got against ref. */
static void compare(const float *got, const float *ref, int V, double *rel, double *dp) {
    *rel = 0;
    *dp = 0;
    for (int b = 0; b < B; b++) {
        const float *g = got + (size_t)b * V, *r = ref + (size_t)b * V;
        double mx = r[0], mn = r[0], e = 0;
        for (int i = 0; i < V; i++) {
            if (r[i] > mx) mx = r[i];
            if (r[i] < mn) mn = r[i];
            if (fabs((double)g[i] - r[i]) > e) e = fabs((double)g[i] - r[i]);
        }
        if (e / (mx - mn) > *rel) *rel = e / (mx - mn);
        double d = fabs(p_unsafe(g, V) - p_unsafe(r, V));
        if (d > *dp) *dp = d;
    }
}

/* "AMD EPYC (family 26 model 2; avx2 avx512f avx512_bf16 avx512_vnni)":
 * /proc/cpuinfo's model name (often vague in VMs), its family and model
 * numbers, and the flags the kernel families are chosen by. */
static void cpu_desc(char *out, size_t len) {
    char line[8192], name[128] = "unknown CPU", fam[16] = "?", mod[16] = "?", flags[160] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        if (!v) continue;
        v += 1 + (v[1] == ' ');
        v[strcspn(v, "\n")] = 0;
        if (!strncmp(line, "model name", 10)) snprintf(name, sizeof name, "%s", v);
        else if (!strncmp(line, "cpu family", 10)) snprintf(fam, sizeof fam, "%s", v);
        else if (!strncmp(line, "model\t", 6)) snprintf(mod, sizeof mod, "%s", v);
        else if (!strncmp(line, "flags", 5)) {
            static const char *const want[] = {"avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16",
                                               "amx_bf16", "amx_int8"};
            char all[sizeof line + 2];
            snprintf(all, sizeof all, " %s ", v);
            for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
                char key[32];
                snprintf(key, sizeof key, " %s ", want[i]);
                if (strstr(all, key) && strlen(flags) + strlen(want[i]) + 2 < sizeof flags)
                    strcat(strcat(flags, *flags ? " " : ""), want[i]);
            }
            break;
        }
    }
    if (f) fclose(f);
    snprintf(out, len, "%s (family %s model %s; %s)", name, fam, mod, *flags ? flags : "no AVX2");
}

int main(int argc, char **argv) {
    const char *dir = getenv("GUARDD_BENCH_MODEL"), *list = "f32,bf16,int8";
    int threads = 0, reps = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]) > 0 ? atoi(argv[i + 1]) : 1;
        else if (!strcmp(argv[i], "--precisions")) list = argv[i + 1];
        else if (!strcmp(argv[i], "--shape")) {
            if (sscanf(argv[i + 1], "%dx%d", &B, &L) != 2 || B < 1 || B > B_MAX || L < 1) {
                fprintf(stderr, "bench_precision: --shape BxL, 1 <= B <= %d\n", B_MAX);
                return 2;
            }
        }
        else { fprintf(stderr, "bench_precision: unknown option %s\n", argv[i]); return 2; }
    }
    if (!dir) { fprintf(stderr, "bench_precision: no model (--model DIR or GUARDD_BENCH_MODEL)\n"); return 2; }
    Precision precs[MAX_PREC];
    int n = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tokp = strtok(buf, ","); tokp && n < MAX_PREC; tokp = strtok(NULL, ",")) {
        if (precision_parse(tokp, &precs[n]) < 0) { fprintf(stderr, "bench_precision: bad precision %s\n", tokp); return 2; }
        precs[n] = precision_resolve(precs[n]);
        n++;
    }
    if (n == 0) { fprintf(stderr, "bench_precision: no precision given\n"); return 2; }
    if (precs[0] != PREC_F32)   /* e.g. a model whose f32 form does not fit in memory */
        printf("bench_precision: reference is %s, not f32: \"x f32\", logit err and max dP are against %s\n",
               precision_name(precs[0]), precision_name(precs[0]));
    /* the BLIS set for the forced family (see the top of the file) */
    const char *fam = getenv("GUARDD_KERNELS"), *blis_arch = getenv("GUARDD_BENCH_BLIS_ARCH");
    int avx2_forced = fam && (!strcmp(fam, "avx2") || !strcmp(fam, "avxvnni"));
#if defined(__x86_64__)
    __builtin_cpu_init();
    avx2_forced = avx2_forced && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    avx2_forced = 0;
#endif
    if (!blis_arch || !*blis_arch) blis_arch = avx2_forced ? "zen3" : NULL;
    char tmpl[] = "/tmp/bench_precision.XXXXXX";
    if (!mkdtemp(tmpl)) { perror("bench_precision: mkdtemp"); return 1; }
    Result res[MAX_PREC];
    char paths[MAX_PREC][64];
    for (int i = 0; i < n; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%d.bin", tmpl, i);
        int fd[2];
        if (pipe(fd) != 0) { perror("pipe"); return 1; }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            blis_setup(threads, blis_arch);
            Result r = run_one(dir, precs[i], threads, reps, paths[i]);
            _exit(write(fd[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
        }
        close(fd[1]);
        memset(&res[i], 0, sizeof res[i]);
        if (read(fd[0], &res[i], sizeof res[i]) != (ssize_t)sizeof res[i]) res[i].ok = 0;
        close(fd[0]);
        int st;
        waitpid(pid, &st, 0);
        if (!res[i].ok) { fprintf(stderr, "bench_precision: the %s run failed\n", precision_name(precs[i])); return 1; }
    }
    ModelConfig cfg;
    char cpath[4096], err[256];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    if (model_config_load(cpath, &cfg, err, sizeof err)) { fprintf(stderr, "bench_precision: %s\n", err); return 1; }
    size_t nl = (size_t)B * cfg.vocab_size;
    float *ref = read_logits(paths[0], nl);
    if (!ref) { fprintf(stderr, "bench_precision: cannot read the f32 logits\n"); return 1; }
    char cpu[256];
    cpu_desc(cpu, sizeof cpu);
    blis_setup(threads, blis_arch);   /* this process: to name the set the children ran */
    printf("bench_precision: %s, %d layers, dim %d; %d threads; %dx%d prefill, decode step M=%d\n",
           dir, cfg.n_layers, cfg.dim, threads > 0 ? threads : blis_threads(), B, L, B);
    if (fam && *fam && strcmp(fam, "auto")) {
        char up[16];
        size_t i = 0;
        for (; fam[i] && i + 1 < sizeof up; i++) up[i] = (char)toupper((unsigned char)fam[i]);
        up[i] = 0;
        printf("bench_precision: %s kernels forced (GUARDD_KERNELS=%s) on %s\n", up, fam, cpu);
    }
    else
        printf("bench_precision: kernels chosen from the CPU flags on %s\n", cpu);
    printf("bench_precision: BLIS kernel set %s (%s)\n", blis_arch_name(),
           blis_arch ? (avx2_forced && !getenv("GUARDD_BENCH_BLIS_ARCH") ? "BLIS's AVX2 set forced with GUARDD_KERNELS=avx2|avxvnni"
                                                                      : "GUARDD_BENCH_BLIS_ARCH")
                     : "chosen from the CPU flags");
    printf("%-5s %-20s %7s %7s %9s %9s %12s %7s %10s %7s %10s %9s\n", "prec", "kernels", "load s", "fill s",
           "weights", "peak RSS", "prefill t/s", "x f32", "decode s", "x f32", "logit err", "max dP");
    for (int i = 0; i < n; i++) {
        double rel = 0, dp = 0;
        float *got = i ? read_logits(paths[i], nl) : NULL;
        if (i && !got) { fprintf(stderr, "bench_precision: cannot read logits\n"); return 1; }
        if (got) compare(got, ref, cfg.vocab_size, &rel, &dp);
        free(got);
        double tps = B * L / res[i].prefill_s, tps0 = B * L / res[0].prefill_s;
        printf("%-5s %-20s %7.2f %7.2f %6.2f GB %5.2f GiB %12.1f %7.2f %10.3f %7.2f %10.2e %9.2e\n",
               precision_name(precs[i]), res[i].kernels, res[i].load_s, res[i].fill_s, res[i].weight_gb,
               res[i].rss_kb / 1048576.0, tps, tps / tps0, res[i].decode_s,
               res[i].decode_s / res[0].decode_s, rel, dp);
        unlink(paths[i]);
    }
    rmdir(tmpl);
    free(ref);
    return 0;
}
