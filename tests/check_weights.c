/* check_weights.c - unit tests of the weight-matrix products (weights.c,
 * wkernels.c): every precision on every kernel family (a family this CPU
 * lacks runs its best one), small M (streaming kernels) and large M (tiles,
 * oneDNN, BLIS), odd K (vector tails), accumulate, a row stride past N.
 *
 * Each product is checked against a double-precision product of what is
 * stored (the bf16 or dequantized int8 weights; for bf16 dot products the
 * bf16-rounded activations), and the int8 integer paths (VNNI + oneDNN, and
 * plain C) against each other to the last bit of their integer sums.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "bf16.h"
#include "transformer.h"
#include "weights.h"

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

static Mat make(Precision p, int N, int K) {
    Mat m = {0};
    m.f = malloc(sizeof(float) * (size_t)N * K);
    for (size_t i = 0; i < (size_t)N * K; i++) m.f[i] = frand();
    m.w = wm_f32(m.f, N, K);
    if (p == PREC_BF16) {
        m.a = malloc(2 * (size_t)N * K);
        wm_round_bf16(m.f, m.a, (size_t)N * K);
        m.w = (WeightMatrix){.prec = p, .rows = N, .cols = K, .bf16 = m.a};
    } else if (p == PREC_INT8) {
        m.a = malloc((size_t)N * K);
        m.b = malloc(sizeof(float) * N);
        m.c = malloc(sizeof(int32_t) * N);
        m.w = (WeightMatrix){.prec = p, .rows = N, .cols = K, .q = m.a, .scale = m.b, .qsum = m.c};
        for (int r = 0; r < N; r++)
            m.w.scale[r] = wm_quantize_row(m.f + (size_t)r * K, K, m.w.q + (size_t)r * K, &m.w.qsum[r]);
    }
    return m;
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
    int xb = p == PREC_BF16 && !strncmp(wm_kernels(p), "avx512bf16", 10);   /* activations rounded */
    double worst = 0, scale = 0;
    for (int j = 0; j < N; j++) {
        wm_row(&m.w, j, row);
        for (int i = 0; i < M; i++) {
            double want = acc ? 0.5 : 0;
            for (int k = 0; k < K; k++) {
                float x = X[(size_t)i * K + k];
                want += (double)(xb ? bf16_to_f32(f32_to_bf16(x)) : x) * row[k];
            }
            double d = fabs(Y[(size_t)i * ldy + j] - want);
            if (d > worst) worst = d;
            if (fabs(want) > scale) scale = fabs(want);
        }
    }
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldy; j++) ck_assert_float_eq(Y[(size_t)i * ldy + j], 0.5f);
    ck_assert_msg(worst <= tol * scale, "%s/%s (%s) M=%d N=%d K=%d acc=%d: error %g of %g",
                  precision_name(p), fam, wm_kernels(p), M, N, K, acc, worst / scale, tol);
    free(X); free(Y); free(row);
    drop(&m);
}

static const char *const fams[] = {"avx512", "avx2", "generic"};
static const int shapes[][4] = {   /* M, N, K, accumulate */
    {1, 33, 20, 0}, {3, 9, 2051, 1}, {16, 6, 70, 1}, {17, 5, 9, 0}, {37, 19, 70, 1}, {70, 260, 64, 0},
};

START_TEST(test_products) {
    const char *fam = fams[_i];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int *sh = shapes[s];
        check(PREC_F32, fam, sh[0], sh[1], sh[2], sh[3], 1e-5);
        check(PREC_BF16, fam, sh[0], sh[1], sh[2], sh[3], 1e-5);
        /* int8 with quantized activations: ~1/127 of the activation scale */
        check(PREC_INT8, fam, sh[0], sh[1], sh[2], sh[3], 3e-2);
    }
}
END_TEST

/* The integer paths compute the same sums: VNNI/oneDNN == plain C, small and
 * large M, bit for bit. */
START_TEST(test_int8_paths_agree) {
    int N = 300, K = 2051;
    Mat m = make(PREC_INT8, N, K);
    for (int M = 1; M <= 40; M += 13) {
        float *X = malloc(sizeof(float) * (size_t)M * K), *a = malloc(sizeof(float) * (size_t)M * N);
        float *b = malloc(sizeof(float) * (size_t)M * N);
        for (int i = 0; i < M * K; i++) X[i] = frand() * 3;
        wm_set_kernels("avx512");
        wm_matmul(&m.w, M, X, K, a, N, 0, 2);
        wm_set_kernels("generic");
        wm_matmul(&m.w, M, X, K, b, N, 0, 2);
        ck_assert_msg(memcmp(a, b, sizeof(float) * (size_t)M * N) == 0, "M=%d: int8 paths differ", M);
        free(X); free(a); free(b);
    }
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
    ck_assert_str_eq(wm_kernels(PREC_F32), "blis");
    ck_assert_uint_eq(wm_bytes(PREC_BF16, 3, 5), 30);
    ck_assert_uint_eq(wm_bytes(PREC_INT8, 3, 5), 15 + 3 * 8);
}
END_TEST

int main(void) {
    blis_setup(2, getenv("GUARDD_TEST_BLIS_ARCH"));
    Suite *s = suite_create("weights");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_products, 0, 3);
    tcase_add_test(tc, test_int8_paths_agree);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
