/* check_safetensors.c - the safetensors reader against hand-built files, and
 * the f16/bf16 conversions against known bit patterns.
 *
 * Each malformed case writes a small file (8-byte length, header JSON, data
 * bytes) into a temp dir and expects st_open_file()/st_open_dir() to fail
 * with a message naming the file and, where there is one, the tensor. Valid
 * cases check that tensors are found and their bytes decode as written.
 */
#include "check_main.h"
#include "check_fixture.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bf16.h"
#include "safetensors.h"

/* Writes name in check_tmpdir: length prefix `hlen` (or strlen(header) when
 * hlen < 0), the header, then ndata bytes counting 0, 1, 2, ... */
static const char *write_raw(const char *name, const char *header, long long hlen, size_t ndata) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", check_tmpdir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned long long n = hlen < 0 ? strlen(header) : (unsigned long long)hlen;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < ndata; i++) fputc((int)(i & 0xff), f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* Expects opening the file to fail with an error that mentions the path and
 * each of the given words. */
static void expect_fail(const char *path, const char *w1, const char *w2) {
    StSet s;
    char err[1024] = "";
    ck_assert_int_eq(st_open_file(&s, path, err, sizeof err), -1);
    ck_assert_msg(strstr(err, path), "error does not name the file: %s", err);
    if (w1) ck_assert_msg(strstr(err, w1), "error lacks \"%s\": %s", w1, err);
    if (w2) ck_assert_msg(strstr(err, w2), "error lacks \"%s\": %s", w2, err);
}

START_TEST(valid_file_reads_back) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
                    "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}   ";
    const char *path = write_raw("ok.safetensors", h, -1, 12);
    StSet s;
    char err[512];
    ck_assert_msg(st_open_file(&s, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.n_tensors, 2);
    const StTensor *a = st_find(&s, "a"), *b = st_find(&s, "b");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(st_find(&s, "c"));
    ck_assert_int_eq(a->dtype, ST_BF16);
    ck_assert_int_eq((int)a->shape[0], 2);
    float out[2];
    st_to_f32(a, 0, 2, out);
    /* bytes 00 01 02 03 -> bf16 0x0100, 0x0302 -> f32 bits 0x01000000, 0x03020000 */
    ck_assert_uint_eq(f32_to_bits(out[0]), 0x01000000u);
    ck_assert_uint_eq(f32_to_bits(out[1]), 0x03020000u);
    st_to_f32(b, 1, 1, out);
    ck_assert_uint_eq(f32_to_bits(out[0]), 0x0b0a0908u);
    st_close(&s);
}
END_TEST

START_TEST(truncated_file) {
    char path[512];
    snprintf(path, sizeof path, "%s/short.safetensors", check_tmpdir);
    FILE *f = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, f);
    fclose(f);
    expect_fail(path, "truncated", NULL);
}
END_TEST

START_TEST(header_length_beyond_file) {
    expect_fail(write_raw("long.safetensors", "{}", 1000, 0), "header length", NULL);
}
END_TEST

START_TEST(header_length_zero_or_huge) {
    expect_fail(write_raw("zero.safetensors", "{}", 0, 0), "header length", NULL);
    /* a sparse 101 MiB file so the length fits in the file but not the limit */
    const char *path = write_raw("huge.safetensors", "{}", 101ll << 20, 0);
    ck_assert_int_eq(truncate(path, (101 << 20) + 64), 0);
    expect_fail(path, "header length", NULL);
}
END_TEST

START_TEST(bad_json) {
    expect_fail(write_raw("bad.safetensors", "{\"a\":{\"dtype\":", -1, 0), "JSON", NULL);
    expect_fail(write_raw("arr.safetensors", "[1,2]", -1, 0), "object", NULL);
    expect_fail(write_raw("dup.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8),
                "JSON", NULL);
}
END_TEST

START_TEST(offsets_out_of_bounds) {
    expect_fail(write_raw("oob.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 8),
                "\"w\"", "out of bounds");
    expect_fail(write_raw("rev.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", -1, 8),
                "\"w\"", "out of bounds");
    expect_fail(write_raw("neg.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", -1, 8),
                "\"w\"", "data_offsets");
    expect_fail(write_raw("one.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", -1, 8),
                "\"w\"", "data_offsets");
}
END_TEST

START_TEST(overlapping_tensors) {
    expect_fail(write_raw("ovl.safetensors",
                          "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"y\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]}}", -1, 16),
                "overlaps", "\"y\"");
    /* an empty tensor between two overlapping ones must not hide the overlap */
    expect_fail(write_raw("ovl2.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                          "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]}}", -1, 16),
                "overlaps", "\"b\"");
}
END_TEST

START_TEST(byte_count_mismatch) {
    expect_fail(write_raw("cnt.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8),
                "\"w\"", "need 6");
    /* element count overflowing size_t is caught, not wrapped */
    expect_fail(write_raw("ovf.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", -1, 0),
                "\"w\"", "overflow");
    expect_fail(write_raw("ovf2.safetensors",
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", -1, 0),
                "\"w\"", NULL);
}
END_TEST

/* Random byte flips and truncations of a valid file: every outcome must be
 * a clean accept or a clean error; accepted tensors are read in full so
 * ASan would catch an out-of-bounds view. Deterministic (fixed xorshift). */
START_TEST(mutation_fuzz) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[12,20]},"
                    "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[20,28]}}";
    char path[512];
    snprintf(path, sizeof path, "%s", write_raw("fuzz.safetensors", h, -1, 28));
    FILE *f = fopen(path, "rb");
    unsigned char orig[1024], buf[1024];
    size_t len = fread(orig, 1, sizeof orig, f);
    fclose(f);
    uint64_t x = 88172645463325252ull;
    int accepted = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, len);
        size_t n = len;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if (x % 5 == 0) n = (size_t)(x >> 8) % len;                      /* truncate */
        for (int k = 0; k < 1 + (int)(x >> 60) % 4; k++) {              /* flip bytes */
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            size_t pos = (size_t)(x >> 16) % (x % 3 ? 8 + strlen(h) : len);
            buf[pos] = (x & 1) ? (unsigned char)(x >> 40) : (unsigned char)"0123456789[]{},:\"-e"[(x >> 40) % 19];
        }
        f = fopen(path, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
        StSet s;
        char err[512];
        if (st_open_file(&s, path, err, sizeof err) == 0) {
            accepted++;
            for (int i = 0; i < s.n_tensors; i++) {
                float out[64];
                const StTensor *t = &s.tensors[i];
                for (size_t j = 0; j < t->nelem; j += 64) st_to_f32(t, j, t->nelem - j < 64 ? t->nelem - j : 64, out);
            }
            st_close(&s);
        } else {
            ck_assert_msg(strstr(err, path), "error does not name the file: %s", err);
        }
    }
    ck_assert_int_gt(accepted, 0);   /* some flips only touch data or whitespace */
}
END_TEST

START_TEST(too_many_tensors) {
    size_t cap = (size_t)(ST_MAX_TENSORS + 1) * 64 + 16, n = 0;
    char *h = malloc(cap);
    n += (size_t)snprintf(h + n, cap - n, "{");
    for (int i = 0; i <= ST_MAX_TENSORS; i++)
        n += (size_t)snprintf(h + n, cap - n, "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                              i ? "," : "", i);
    snprintf(h + n, cap - n, "}");
    expect_fail(write_raw("many.safetensors", h, -1, 0), "more than", NULL);
    free(h);
}
END_TEST

START_TEST(unsupported_dtype) {
    expect_fail(write_raw("i8.safetensors", "{\"q\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}", -1, 4),
                "\"q\"", "I8");
    expect_fail(write_raw("nodt.safetensors", "{\"q\":{\"shape\":[4],\"data_offsets\":[0,4]}}", -1, 4), "\"q\"", "dtype");
}
END_TEST

START_TEST(bad_shape_and_entry) {
    expect_fail(write_raw("sh.safetensors", "{\"s\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", -1, 4),
                "\"s\"", "shape");
    expect_fail(write_raw("sh2.safetensors", "{\"s\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", -1, 4),
                "\"s\"", "shape");
    expect_fail(write_raw("sh3.safetensors",
                          "{\"s\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", -1, 4),
                "\"s\"", "shape");
    expect_fail(write_raw("ent.safetensors", "{\"e\":7}", -1, 0), "\"e\"", "not an object");
    expect_fail(write_raw("meta.safetensors", "{\"__metadata__\":3}", -1, 0), "__metadata__", NULL);
}
END_TEST

/* Writes a two-shard checkpoint whose index is `index`. */
static void write_shards(const char *index) {
    write_raw("s1.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4);
    write_raw("s2.safetensors", "{\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", -1, 4);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", check_tmpdir);
    FILE *f = fopen(path, "w");
    fputs(index, f);
    fclose(f);
}

#define expect_dir_fail(w1, w2) expect_dir_fail_at(__LINE__, w1, w2)
static void expect_dir_fail_at(int line, const char *w1, const char *w2) {
    StSet s;
    char err[1024] = "";
    ck_assert_msg(st_open_dir(&s, check_tmpdir, err, sizeof err) == -1, "line %d: opened", line);
    ck_assert_msg(strstr(err, check_tmpdir), "error does not name a file: %s", err);
    if (w1) ck_assert_msg(strstr(err, w1), "error lacks \"%s\": %s", w1, err);
    if (w2) ck_assert_msg(strstr(err, w2), "error lacks \"%s\": %s", w2, err);
}

START_TEST(sharded_ok) {
    write_shards("{\"metadata\":{},\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    StSet s;
    char err[512];
    ck_assert_msg(st_open_dir(&s, check_tmpdir, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.n_files, 2);
    ck_assert_int_eq(s.n_tensors, 2);
    const StTensor *b = st_find(&s, "b");
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(strstr(st_path(&s, b), "s2.safetensors"));
    st_close(&s);
}
END_TEST

START_TEST(sharded_mismatches) {
    /* a shard holding a tensor the index does not list */
    write_shards("{\"weight_map\":{\"b\":\"s2.safetensors\",\"a\":\"s1.safetensors\"}}");
    write_raw("s1.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8);
    expect_dir_fail("\"x\"", "not listed");
    write_shards("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s2.safetensors\"}}");
    expect_dir_fail("\"c\"", "missing");
    write_shards("{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s2.safetensors\"}}");
    expect_dir_fail("\"a\"", NULL);
    write_shards("{\"weight_map\":{\"a\":\"../s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    expect_dir_fail("\"a\"", "plain file name");
    write_shards("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"nope.safetensors\"}}");
    expect_dir_fail("nope.safetensors", "cannot open");
    write_shards("{\"weight_map\":[]}");
    expect_dir_fail("weight_map", NULL);
    write_shards("{\"weight_map\":");
    expect_dir_fail("JSON", NULL);
}
END_TEST

START_TEST(sharded_duplicate_tensor) {
    write_shards("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    write_raw("s2.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", -1, 8);
    expect_dir_fail("\"a\"", "also appears");
}
END_TEST

START_TEST(empty_dir) {
    expect_dir_fail("no model.safetensors", NULL);
}
END_TEST

START_TEST(f16_known_values) {
    ck_assert_float_eq(f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(f16_to_f32(0xc000), -2.0f);
    ck_assert_float_eq(f16_to_f32(0x7bff), 65504.0f);
    ck_assert_float_eq(f16_to_f32(0x3555), 0x1.554p-2f);
    ck_assert_float_eq(f16_to_f32(0x0001), ldexpf(1.0f, -24));          /* smallest subnormal */
    ck_assert_float_eq(f16_to_f32(0x03ff), ldexpf(1023.0f, -24));       /* largest subnormal */
    ck_assert_float_eq(f16_to_f32(0x8200), -ldexpf(512.0f, -24));
    ck_assert_float_eq(f16_to_f32(0x0400), ldexpf(1.0f, -14));          /* smallest normal */
    ck_assert(isinf(f16_to_f32(0x7c00)) && f16_to_f32(0x7c00) > 0);
    ck_assert(isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
    ck_assert(isnan(f16_to_f32(0x7e00)));
    ck_assert_uint_eq(f32_to_bits(f16_to_f32(0x8000)), 0x80000000u);    /* -0 */
}
END_TEST

START_TEST(f16_encode_round_trip_and_rounding) {
    for (unsigned h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;            /* NaN payloads */
        ck_assert_uint_eq(f32_to_f16(f16_to_f32((uint16_t)h)), h);
    }
    ck_assert_uint_eq(f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);      /* tie -> even */
    ck_assert_uint_eq(f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);  /* tie -> even (up) */
    ck_assert_uint_eq(f32_to_f16(65520.0f), 0x7c00);                     /* overflow -> inf */
    ck_assert_uint_eq(f32_to_f16(65519.0f), 0x7bff);
    ck_assert_uint_eq(f32_to_f16(ldexpf(1.0f, -25)), 0x0000);            /* tie -> even (zero) */
    ck_assert_uint_eq(f32_to_f16(ldexpf(3.0f, -25)), 0x0002);
    ck_assert_uint_eq(f32_to_f16(-1e-30f), 0x8000);
    ck_assert_uint_eq(f32_to_f16(NAN) & 0x7e00, 0x7e00);
}
END_TEST

START_TEST(bf16_known_values) {
    ck_assert_float_eq(bf16_to_f32(0x3f80), 1.0f);
    ck_assert_float_eq(bf16_to_f32(0xc0a0), -5.0f);
    ck_assert_float_eq(bf16_to_f32(0x0001), ldexpf(1.0f, -133));         /* subnormal passes through */
    ck_assert(isinf(bf16_to_f32(0x7f80)));
    ck_assert_uint_eq(f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);      /* tie -> even */
    ck_assert_uint_eq(f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
    ck_assert_uint_eq(f32_to_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -20)), 0x3f81);
    ck_assert_uint_eq(f32_to_bf16(-5.0f), 0xc0a0);
    ck_assert(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}
END_TEST

int main(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = check_case(s, "files", 0);
    check_tmpdir_case(tc);
    tcase_add_test(tc, valid_file_reads_back);
    tcase_add_test(tc, truncated_file);
    tcase_add_test(tc, header_length_beyond_file);
    tcase_add_test(tc, header_length_zero_or_huge);
    tcase_add_test(tc, bad_json);
    tcase_add_test(tc, offsets_out_of_bounds);
    tcase_add_test(tc, overlapping_tensors);
    tcase_add_test(tc, byte_count_mismatch);
    tcase_add_test(tc, unsupported_dtype);
    tcase_add_test(tc, too_many_tensors);
    tcase_add_test(tc, mutation_fuzz);
    tcase_add_test(tc, bad_shape_and_entry);
    tcase_add_test(tc, sharded_ok);
    tcase_add_test(tc, sharded_mismatches);
    tcase_add_test(tc, sharded_duplicate_tensor);
    tcase_add_test(tc, empty_dir);
    TCase *cv = check_case(s, "conversions", 0);
    tcase_add_test(cv, f16_known_values);
    tcase_add_test(cv, f16_encode_round_trip_and_rounding);
    tcase_add_test(cv, bf16_known_values);
    return check_run(s);
}
