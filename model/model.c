/* model.c - model_load(): config.json + safetensors -> Weights in the
 * precision asked for (f32, bf16 or int8, weights.h).
 *
 * The loader builds the list of tensors the Llama layout needs from the
 * config (name, exact shape, byte offset inside one 64-byte-aligned arena),
 * checks the checkpoint holds exactly those (missing, unexpected and wrongly
 * shaped tensors are errors naming file and tensor), then converts every
 * tensor into place on all threads, straight into the stored form, in tasks
 * of ~256K elements taken in file order: the source is read with pread
 * (st_read), straight into the arena when the stored form is the checkpoint's
 * dtype (bf16 for bf16, f32 for f32), else into a per-thread buffer of ~1 MiB
 * and from there widened, rounded to bf16 once, or quantized row by row (so
 * no f32 copy of a matrix ever exists outside f32 precision). The file
 * mapping is only read for the headers and the revision hash, so peak RSS is
 * the stored size plus a few MiB, never stored + file size. Fusing is done by
 * destination: q, k and v rows land back to back in wqkv, gate and up rows
 * in w13 (their int8 scales and low bits too).
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
#include <stdint.h>
#include <time.h>

typedef struct {
    char name[96];
    int64_t rows, cols;     /* cols == 0: a 1-D tensor of `rows` elements (f32) */
    size_t off;             /* byte offset in the arena */
    size_t row0;            /* int8: first row in the scale array */
    size_t lo0;             /* int8: first word in the low-bit array */
    int lo_bits;            /* int8: low bits per weight (weights.h) */
    Precision prec;         /* stored form (F32 for 1-D tensors) */
} Want;

typedef struct {
    unsigned char *arena;   /* anonymous mapping of arena_bytes */
    size_t arena_bytes;
    float *scale;           /* int8: per matrix row, all matrices (inside the arena) */
    uint32_t *lo;           /* int8: low bits of every row, all matrices (inside the arena) */
} Priv;

typedef struct {            /* layout state while planning */
    Precision prec;         /* of every matrix */
    size_t off, rows, lo_words;
    int lo_bits;            /* int8: of the matrices wanted next */
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
    x->lo0 = pl->lo_words;
    x->lo_bits = pl->lo_bits;
    x->prec = cols ? pl->prec : PREC_F32;
    if (cols) {
        pl->off += (size_t)rows * (size_t)cols * elem_bytes(x->prec);
        pl->rows += (size_t)rows;
        if (x->prec == PREC_INT8) pl->lo_words += (size_t)rows * (size_t)wm_lo_words((int)cols, pl->lo_bits);
    } else {
        pl->off += (size_t)rows * sizeof(float);
    }
}

/* Lists every tensor with its arena offset. Fused parts are laid out back to
 * back (no alignment gap) so that wqkv and w13 are single matrices. The int8
 * scales, then low bits, follow the values (*scales_off; fused parts' rows
 * are consecutive there too). */
static int plan(const ModelConfig *c, Precision prec, Want *w, size_t *total, size_t *scales_off,
                size_t *n_rows) {
    int n = 0;
    Plan pl = {prec, 0, 0, 0, WM_I8_BITS_OTHER};
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
        pl.lo_bits = WM_I8_BITS_MLP;
        W("mlp.gate_proj", c->hidden_dim, c->dim);
        W("mlp.up_proj", c->hidden_dim, c->dim); A;
        W("mlp.down_proj", c->dim, c->hidden_dim); A;
        pl.lo_bits = WM_I8_BITS_OTHER;
#undef W
    }
    want(w, &n, &pl, "model.norm.weight", c->dim, 0);
    A;
    if (!c->tied) want(w, &n, &pl, "lm_head.weight", c->vocab_size, c->dim);
    A;
#undef A
    *scales_off = pl.off;
    *n_rows = pl.rows;
    if (prec == PREC_INT8) pl.off += align64(pl.rows * sizeof(float)) + align64(pl.lo_words * sizeof(uint32_t));
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
        wm.lo = p->lo + x->lo0;
        wm.lo_bits = x->lo_bits;
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
            Want lm = {.name = "lm_head.weight", .rows = c->vocab_size, .cols = c->dim, .prec = PREC_F32};
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

#define CHUNK ((size_t)1 << 18)   /* elements per task: up to 1 MiB of source, cache-sized */

typedef struct {
    const Want *w;
    const StTensor *t;
    size_t first, n;        /* elements of t; whole rows for int8 */
} Task;

static int by_source(const void *a, const void *b) {
    const Task *x = a, *y = b;
    if (x->t->file != y->t->file) return x->t->file < y->t->file ? -1 : 1;
    const unsigned char *p = x->t->data + x->first * st_dtype_size(x->t->dtype),
                        *q = y->t->data + y->first * st_dtype_size(y->t->dtype);
    return p < q ? -1 : p > q;
}

/* Elements per task for w: CHUNK, or for int8 the whole rows that fit (at
 * least one). */
static size_t task_elems(const Want *w) {
    size_t K = w->cols ? (size_t)w->cols : 1;
    if (w->prec != PREC_INT8) return CHUNK;
    return CHUNK / K ? CHUNK / K * K : K;
}

/* The conversion work as tasks of about CHUNK elements (int8: whole rows),
 * in file order so that reads go through each file front to back. */
static Task *make_tasks(const StSet *s, const Want *w, int n, size_t *n_tasks, size_t *max_cols) {
    size_t cap = 0;
    *max_cols = 1;
    for (int i = 0; i < n; i++) {
        size_t K = w[i].cols ? (size_t)w[i].cols : 1, per = task_elems(&w[i]);
        cap += ((size_t)w[i].rows * K + per - 1) / per;
        if (K > *max_cols) *max_cols = K;
    }
    Task *tk = malloc(sizeof *tk * (cap ? cap : 1));
    if (!tk) return NULL;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const StTensor *t = st_find(s, w[i].name);   /* nelem == rows * K: match() checked the shape */
        size_t per = task_elems(&w[i]);
        for (size_t f = 0; f < t->nelem; f += per)
            tk[k++] = (Task){&w[i], t, f, t->nelem - f < per ? t->nelem - f : per};
    }
    qsort(tk, k, sizeof *tk, by_source);
    *n_tasks = k;
    return tk;
}

/* One task: the source elements read into raw (or straight into place when
 * the stored form is the checkpoint's dtype), then widened, rounded to bf16
 * or quantized row by row into place; row holds max_cols floats. */
static void run_task(const StSet *s, const Task *k, const Priv *p, unsigned char *raw, float *row,
                     size_t max_cols) {
    const StTensor *t = k->t;
    const Want *w = k->w;
    unsigned char *dst = p->arena + w->off;
    size_t esz = st_dtype_size(t->dtype);
    if (w->prec == PREC_F32 && t->dtype == ST_F32) {
        st_read(s, t, k->first, k->n, (float *)(void *)dst + k->first);
        return;
    }
    if (w->prec == PREC_BF16 && t->dtype == ST_BF16) {   /* the checkpoint's own values, as they are */
        st_read(s, t, k->first, k->n, (uint16_t *)(void *)dst + k->first);
        return;
    }
    st_read(s, t, k->first, k->n, raw);
    if (w->prec == PREC_F32) {
        st_decode_f32(t->dtype, raw, k->n, (float *)(void *)dst + k->first);
        return;
    }
    if (w->prec == PREC_BF16) {      /* f16/f32: rounded once, a slice at a time */
        for (size_t i = 0; i < k->n; i += max_cols) {
            size_t len = k->n - i < max_cols ? k->n - i : max_cols;
            st_decode_f32(t->dtype, raw + i * esz, len, row);
            wm_round_bf16(row, (uint16_t *)(void *)dst + k->first + i, len);
        }
        return;
    }
    size_t K = (size_t)w->cols;      /* int8: one row at a time */
    for (size_t r = k->first / K; r < (k->first + k->n) / K; r++) {
        const unsigned char *src = raw + (r * K - k->first) * esz;
        const float *x = row;
        if (t->dtype == ST_F32) x = (const float *)(const void *)src;   /* raw is malloc-aligned */
        else st_decode_f32(t->dtype, src, K, row);
        p->scale[w->row0 + r] = wm_quantize_row(x, (int)K, w->lo_bits, (int8_t *)dst + r * K,
                                                p->lo + w->lo0 + r * (size_t)wm_lo_words((int)K, w->lo_bits));
    }
}

/* Every tensor into place, on all threads. Each thread has one buffer of
 * source bytes and one f32 row (about 1 MiB together), so besides the arena
 * nothing the size of a matrix is ever held, and no file page is mapped. */
static int convert(const StSet *s, const Want *w, int n, const Priv *p) {
    size_t nt, max_cols;
    Task *tk = make_tasks(s, w, n, &nt, &max_cols);
    if (!tk) return -1;
    size_t raw_elems = CHUNK > max_cols ? CHUNK : max_cols;
    int oom = 0;
    #pragma omp parallel reduction(| : oom)
    {
        unsigned char *raw = malloc(raw_elems * 4);
        float *row = malloc(max_cols * sizeof(float));
        oom = !raw || !row;
        #pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < nt; i++)
            if (!oom) run_task(s, &tk[i], p, raw, row, max_cols);
        free(raw);
        free(row);
    }
    free(tk);
    return oom ? -1 : 0;
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

#define HUGE ((size_t)2 << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23      /* Linux 5.14; older kernels refuse it (then pages fault in) */
#endif

/* The weights live in one anonymous mapping, aligned to 2 MiB (an unaligned
 * start or end would leave its partial 2 MiB in small pages), with
 * transparent huge pages requested, populated up front by the kernel on all
 * threads. Where the time of a load goes, measured on a VM (1B model): the
 * conversion itself takes 0.3-1 s; first touch of memory the host has not
 * backed yet costs 0.1-0.15 GB/s with 4 KiB pages and 0.4-0.7 GB/s with 2 MiB
 * ones (memory touched recently: 3-10 GB/s), so a 3 GB arena can take
 * seconds to fill whatever the loader does. MADV_POPULATE_WRITE from two
 * threads filled it ~1.5x faster than the copies' own page faults. The values
 * are never zeroed by us: every byte is overwritten by the conversion. */
static int alloc_arena(Priv *p, size_t bytes) {
    if (!bytes) bytes = 64;
    size_t len = (bytes + HUGE - 1) & ~(HUGE - 1);
    unsigned char *a = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return -1;
    size_t head = (size_t)(-(uintptr_t)a & (HUGE - 1));
    if (head) munmap(a, head);
    munmap(a + head + len, HUGE - head);
    a += head;
    madvise(a, len, MADV_HUGEPAGE);
    long n = (long)(len / HUGE), per = 32;   /* 64 MiB per madvise call */
    #pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < n; i += per)
        madvise(a + (size_t)i * HUGE, (size_t)(n - i < per ? n - i : per) * HUGE, MADV_POPULATE_WRITE);
    p->arena = a;
    p->arena_bytes = len;
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
    double t0 = now();
    if (!m->w.layers || alloc_arena(p, total)) {
        errmsg(err, errlen, "cannot allocate %zu bytes for the %s weights", total,
               precision_name(m->precision));
        goto out;
    }
    m->load_fill_seconds = now() - t0;
    p->scale = (float *)(void *)(p->arena + scales_off);
    p->lo = (uint32_t *)(void *)(p->arena + scales_off + align64(n_rows * sizeof(float)));
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
    wm_free_cache();   /* shape-keyed, shared by models: only the idle ones go */
}
