/* model.c - model_load(): config.json + safetensors -> Weights in the
 * precision asked for (f32, bf16 or int8, weights.h).
 *
 * The loader builds the list of tensors the Llama layout needs from the
 * config (name, exact shape, byte offset inside one 64-byte-aligned arena),
 * checks the checkpoint holds exactly those (missing, unexpected and wrongly
 * shaped tensors are errors naming file and tensor), then converts each
 * tensor into place in parallel, straight into the stored form: bf16 tensors
 * are copied as they are for bf16, f16/f32 ones rounded once; int8 rows are
 * widened one row at a time into a small buffer and quantized (so no f32
 * copy of a matrix ever exists outside f32 precision). Fusing is done by
 * destination: q, k and v rows land back to back in wqkv, gate and up rows
 * in w13 (their int8 scales too). After a tensor is converted its source
 * pages are dropped, so peak RSS stays near the stored size rather than
 * stored + file size.
 *
 * Tied embeddings: lm_head is the embedding matrix. A checkpoint that is tied
 * but still carries lm_head.weight is accepted; that tensor is shape-checked
 * and ignored, as transformers does when it re-ties the weights after loading.
 */
#include "errmsg.h"
#include "model.h"
#include "safetensors.h"
#include "sha256.h"
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>

typedef struct {
    char name[96];
    int64_t rows, cols;     /* cols == 0: a 1-D tensor of `rows` elements (f32) */
    size_t off;             /* byte offset in the arena */
    size_t row0;            /* int8: first row in the scale/sum arrays */
    Precision prec;         /* stored form (F32 for 1-D tensors) */
} Want;

typedef struct {
    unsigned char *arena;   /* anonymous mapping of arena_bytes */
    size_t arena_bytes;
    float *scale;           /* int8: per matrix row, all matrices (inside the arena) */
    int32_t *qsum;
} Priv;

typedef struct {            /* layout state while planning */
    Precision prec;         /* of every matrix */
    size_t off, rows;
} Plan;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t elem_bytes(Precision p) { return p == PREC_BF16 ? 2 : p == PREC_INT8 ? 1 : 4; }

static void want(Want *w, int *n, Plan *pl, const char *name, int64_t rows, int64_t cols) {
    Want *x = &w[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->rows = rows;
    x->cols = cols;
    x->off = pl->off;
    x->row0 = pl->rows;
    x->prec = cols ? pl->prec : PREC_F32;
    if (cols) {
        pl->off += (size_t)rows * (size_t)cols * elem_bytes(x->prec);
        pl->rows += (size_t)rows;
    } else {
        pl->off += (size_t)rows * sizeof(float);
    }
}

/* Lists every tensor with its arena offset. Fused parts are laid out back to
 * back (no alignment gap) so that wqkv and w13 are single matrices. The int8
 * scales and row sums follow the values (*scales_off). */
static int plan(const ModelConfig *c, Precision prec, Want *w, size_t *total, size_t *scales_off,
                size_t *n_rows) {
    int n = 0;
    Plan pl = {prec, 0, 0};
    char nm[96];
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    want(w, &n, &pl, "model.embed_tokens.weight", c->vocab_size, c->dim);
    pl.off = align64(pl.off);
    for (int l = 0; l < c->n_layers; l++) {
#define W(suffix, r, k) (snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, suffix), want(w, &n, &pl, nm, r, k))
#define A (pl.off = align64(pl.off))
        W("input_layernorm", c->dim, 0); A;
        W("self_attn.q_proj", q, c->dim);
        W("self_attn.k_proj", kv, c->dim);
        W("self_attn.v_proj", kv, c->dim); A;
        W("self_attn.o_proj", c->dim, q); A;
        W("post_attention_layernorm", c->dim, 0); A;
        W("mlp.gate_proj", c->hidden_dim, c->dim);
        W("mlp.up_proj", c->hidden_dim, c->dim); A;
        W("mlp.down_proj", c->dim, c->hidden_dim); A;
#undef W
    }
    want(w, &n, &pl, "model.norm.weight", c->dim, 0);
    A;
    if (!c->tied) want(w, &n, &pl, "lm_head.weight", c->vocab_size, c->dim);
    A;
#undef A
    *scales_off = pl.off;
    *n_rows = pl.rows;
    if (prec == PREC_INT8) pl.off += align64(pl.rows * sizeof(float)) + align64(pl.rows * sizeof(int32_t));
    *total = pl.off;
    return n;
}

static WeightMatrix matrix(const Priv *p, const Want *x, int rows) {
    WeightMatrix wm = {.prec = x->prec, .rows = rows, .cols = (int)x->cols};
    void *a = p->arena + x->off;
    if (x->prec == PREC_BF16) wm.bf16 = a;
    else if (x->prec == PREC_INT8) {
        wm.q = a;
        wm.scale = p->scale + x->row0;
        wm.qsum = p->qsum + x->row0;
    } else wm.f32 = a;
    return wm;
}

static void point_weights(Model *m, const Want *w, const Priv *p) {
    int per = 9;
    const ModelConfig *c = &m->cfg;
#define VEC(x) ((float *)(void *)(p->arena + (x).off))
    m->w.embed = matrix(p, &w[0], c->vocab_size);
    for (int l = 0; l < c->n_layers; l++) {
        const Want *x = w + 1 + l * per;
        LayerWeights *L = &m->w.layers[l];
        L->attn_norm = VEC(x[0]);
        L->wqkv = matrix(p, &x[1], (int)(x[1].rows + x[2].rows + x[3].rows));
        L->wo = matrix(p, &x[4], (int)x[4].rows);
        L->mlp_norm = VEC(x[5]);
        L->w13 = matrix(p, &x[6], (int)(x[6].rows + x[7].rows));
        L->w2 = matrix(p, &x[8], (int)x[8].rows);
    }
    int tail = 1 + c->n_layers * per;
    m->w.final_norm = VEC(w[tail]);
    m->w.lm_head = c->tied ? m->w.embed : matrix(p, &w[tail + 1], c->vocab_size);
#undef VEC
}

static const char *where(const StSet *s, const StTensor *t) { return s->index_path ? st_path(s, t) : s->files[0].path; }

static int shape_ok(const StTensor *t, const Want *w) {
    if (w->cols == 0) return t->ndim == 1 && t->shape[0] == w->rows;
    return t->ndim == 2 && t->shape[0] == w->rows && t->shape[1] == w->cols;
}

static int check_tensor(const StSet *s, const StTensor *t, const Want *w, char *err, size_t errlen) {
    if (shape_ok(t, w)) return 0;
    char have[160];
    st_shape_str(t, have, sizeof have);
    if (w->cols)
        return errmsg(err, errlen, "%s: tensor \"%s\" has shape %s, config.json implies [%lld, %lld]",
                    where(s, t), t->name, have, (long long)w->rows, (long long)w->cols);
    return errmsg(err, errlen, "%s: tensor \"%s\" has shape %s, config.json implies [%lld]",
                where(s, t), t->name, have, (long long)w->rows);
}

/* Every wanted tensor present with the right shape; nothing else present
 * (except a tied checkpoint's redundant lm_head.weight). */
static int match(const StSet *s, const ModelConfig *c, const Want *w, int n, char *err, size_t errlen) {
    const char *where_set = s->index_path ? s->index_path : s->files[0].path;
    char *used = calloc((size_t)s->n_tensors + 1, 1);
    if (!used) return errmsg(err, errlen, "out of memory");
    int rc = -1;
    for (int i = 0; i < n; i++) {
        const StTensor *t = st_find(s, w[i].name);
        if (!t && !strcmp(w[i].name, "lm_head.weight")) {
            errmsg(err, errlen, "%s: missing tensor \"lm_head.weight\" (config.json says tie_word_embeddings is false)",
                 where_set);
            goto out;
        }
        if (!t) { errmsg(err, errlen, "%s: missing tensor \"%s\"", where_set, w[i].name); goto out; }
        if (check_tensor(s, t, &w[i], err, errlen)) goto out;
        used[t - s->tensors] = 1;
    }
    for (int j = 0; j < s->n_tensors; j++) {
        const StTensor *t = &s->tensors[j];
        if (used[j]) continue;
        if (c->tied && !strcmp(t->name, "lm_head.weight")) {
            Want lm = {"lm_head.weight", c->vocab_size, c->dim, 0, 0, PREC_F32};
            if (check_tensor(s, t, &lm, err, errlen)) goto out;
            continue;
        }
        errmsg(err, errlen, "%s: unexpected tensor \"%s\" (not part of the Llama layout)", where(s, t), t->name);
        goto out;
    }
    rc = 0;
out:
    free(used);
    return rc;
}

#define CHUNK ((size_t)1 << 18)   /* elements converted per task */

/* Copies n bytes at src (inside the mapping of file fd, at map) to dst with
 * pread: it reads the page cache directly, where touching the mapping would
 * fault every page table entry in first (measured: most of a bf16 load's
 * system time). Falls back to the mapping. */
static void copy_bytes(int fd, const unsigned char *map, const unsigned char *src, size_t n, void *dst) {
    size_t done = 0;
    while (fd >= 0 && done < n) {
        ssize_t k = pread(fd, (char *)dst + done, n - done, (off_t)(src - map) + (off_t)done);
        if (k <= 0) break;
        done += (size_t)k;
    }
    if (done < n) memcpy((char *)dst + done, src + done, n - done);
}

/* Elements [first, first + len) of t into dst in form prec (not int8); fd
 * is t's file opened for reading (or -1), map that file's mapping. */
static void convert_span(const StTensor *t, Precision prec, size_t first, size_t len, void *dst,
                         int fd, const unsigned char *map) {
    if (prec != PREC_BF16) {
        st_to_f32(t, first, len, (float *)dst + first);
        return;
    }
    uint16_t *d = (uint16_t *)dst + first;
    if (t->dtype == ST_BF16) {          /* the checkpoint's own values, as they are */
        copy_bytes(fd, map, t->data + first * 2, len * 2, d);
        return;
    }
    float buf[1024];                    /* f16/f32: rounded once, a slice at a time */
    for (size_t i = 0; i < len; i += 1024) {
        size_t k = len - i < 1024 ? len - i : 1024;
        st_to_f32(t, first + i, k, buf);
        wm_round_bf16(buf, d + i, k);
    }
}

/* Rows [r0, r1) of matrix tensor t quantized into place; buf holds one row. */
static void quantize_rows(const StTensor *t, const Want *w, const Priv *p, size_t r0, size_t r1,
                          float *buf) {
    size_t K = (size_t)w->cols;
    for (size_t r = r0; r < r1; r++) {
        st_to_f32(t, r * K, K, buf);
        p->scale[w->row0 + r] = wm_quantize_row(buf, (int)K, (int8_t *)(p->arena + w->off) + r * K,
                                                &p->qsum[w->row0 + r]);
    }
}

static int convert(const StSet *s, const Want *w, int n, const Priv *p) {
    int *fds = malloc(sizeof(int) * (size_t)s->n_files);
    if (!fds) return -1;
    for (int f = 0; f < s->n_files; f++) fds[f] = open(s->files[f].path, O_RDONLY | O_CLOEXEC);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const StTensor *t = st_find(s, w[i].name);
        int q8 = w[i].prec == PREC_INT8;
        Precision form = w[i].prec;
        size_t rows_per = q8 ? (CHUNK / (size_t)w[i].cols ? CHUNK / (size_t)w[i].cols : 1) : 0;
        long nch = q8 ? (long)(((size_t)w[i].rows + rows_per - 1) / rows_per)
                      : (long)((t->nelem + CHUNK - 1) / CHUNK);
        int oom = 0;
        #pragma omp parallel for schedule(static) reduction(| : oom)
        for (long k = 0; k < nch; k++) {
            if (q8) {
                size_t r0 = (size_t)k * rows_per, r1 = r0 + rows_per;
                if (r1 > (size_t)w[i].rows) r1 = (size_t)w[i].rows;
                float *buf = malloc(sizeof(float) * (size_t)w[i].cols);
                if (!buf) { oom = 1; continue; }
                quantize_rows(t, &w[i], p, r0, r1, buf);
                free(buf);
                st_release(t, r0 * (size_t)w[i].cols, (r1 - r0) * (size_t)w[i].cols);
                continue;
            }
            size_t first = (size_t)k * CHUNK, len = t->nelem - first < CHUNK ? t->nelem - first : CHUNK;
            convert_span(t, form, first, len, p->arena + w[i].off, fds[t->file], s->files[t->file].map);
            st_release(t, first, len);
        }
        if (oom) rc = -1;
    }
    for (int f = 0; f < s->n_files; f++)
        if (fds[f] >= 0) close(fds[f]);
    free(fds);
    return rc;
}

static int revision(const char *cfg_path, const StSet *s, char out[80]) {
    Sha256 h;
    unsigned char d[32], buf[4096];
    sha256_init(&h);
    FILE *f = fopen(cfg_path, "rb");
    if (!f) return -1;
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&h, buf, k);
    fclose(f);
    for (int i = 0; i < s->n_files; i++) sha256_update(&h, s->files[i].map, 8 + s->files[i].header_len);
    /* a sample of every tensor's data, so fine-tunes with identical headers
     * differ, without hashing gigabytes */
    for (int i = 0; i < s->n_tensors; i++) {
        const StTensor *t = &s->tensors[i];
        size_t k = t->nbytes < 4096 ? t->nbytes : 4096;
        sha256_update(&h, t->data, k);
        sha256_update(&h, t->data + t->nbytes - k, k);
    }
    sha256_final(&h, d);
    sha256_hex(d, out, 16);
    return 0;
}

long model_process_peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void set_name(Model *m, const char *dir) {
    char buf[PATH_MAX];
    if (!realpath(dir, buf)) snprintf(buf, sizeof buf, "%s", dir);
    snprintf(m->name, sizeof m->name, "%s", basename(buf));
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The weights live in one anonymous mapping (page-aligned, so 64-byte
 * aligned) with transparent huge pages requested: filling 6 GB in 4 KiB
 * faults costs seconds, in 2 MiB ones next to nothing. */
static int alloc_arena(Priv *p, size_t bytes) {
    if (!bytes) bytes = 64;
    void *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return -1;
    madvise(a, bytes, MADV_HUGEPAGE);
    p->arena = a;
    p->arena_bytes = bytes;
    return 0;
}

/* Does the part of model_load after the config is known; s is open. */
static int load_weights(Model *m, const StSet *s, char *err, size_t errlen) {
    const ModelConfig *c = &m->cfg;
    int cap = 3 + 9 * c->n_layers;
    Want *w = calloc((size_t)cap, sizeof *w);
    if (!w) return errmsg(err, errlen, "out of memory");
    size_t total, scales_off, n_rows;
    int n = plan(c, m->precision, w, &total, &scales_off, &n_rows), rc = -1;
    Priv *p = m->priv;
    if (match(s, c, w, n, err, errlen)) goto out;
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.layers || alloc_arena(p, total)) {
        errmsg(err, errlen, "cannot allocate %zu bytes for the %s weights", total,
               precision_name(m->precision));
        goto out;
    }
    p->scale = (float *)(void *)(p->arena + scales_off);
    p->qsum = (int32_t *)(void *)(p->arena + scales_off + align64(n_rows * sizeof(float)));
    if (convert(s, w, n, p)) {
        errmsg(err, errlen, "out of memory converting the weights");
        goto out;
    }
    point_weights(m, w, p);
    m->weight_bytes = total;
    rc = 0;
out:
    free(w);
    return rc;
}

Model *model_load(const char *dir, char *err, size_t errlen) {
    return model_load_precision(dir, PREC_F32, err, errlen);
}

Model *model_load_precision(const char *dir, Precision prec, char *err, size_t errlen) {
    double t0 = now();
    char path[4096];
    StSet s;
    Model *m = calloc(1, sizeof *m);
    if (!m || !(m->priv = calloc(1, sizeof(Priv)))) {
        free(m);
        errmsg(err, errlen, "out of memory");
        return NULL;
    }
    m->precision = precision_resolve(prec);
    m->kernels = wm_kernels(m->precision);
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path) {
        errmsg(err, errlen, "%s: directory path too long", dir);
        model_free(m);
        return NULL;
    }
    if (model_config_load(path, &m->cfg, err, errlen) || st_open_dir(&s, dir, err, errlen)) {
        model_free(m);
        return NULL;
    }
    int rc = load_weights(m, &s, err, errlen);
    if (rc == 0 && revision(path, &s, m->revision)) rc = errmsg(err, errlen, "%s: cannot reread", path);
    st_close(&s);
    if (rc) {
        model_free(m);
        return NULL;
    }
    set_name(m, dir);
    m->load_seconds = now() - t0;
    m->peak_rss_kb = model_process_peak_rss_kb();
    return m;
}

void model_free(Model *m) {
    if (!m) return;
    Priv *p = m->priv;
    if (p && p->arena) munmap(p->arena, p->arena_bytes);
    free(p);
    free(m->w.layers);
    free(m);
}
