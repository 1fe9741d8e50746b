/* model.c - model_load(): config.json + safetensors -> f32 Weights.
 *
 * The loader builds the list of tensors the Llama layout needs from the
 * config (name, exact shape, destination inside one 64-byte-aligned f32
 * arena), checks the checkpoint holds exactly those (missing, unexpected and
 * wrongly shaped tensors are errors naming file and tensor), then converts
 * each tensor into place in parallel. Fusing is done by destination: q, k and
 * v rows land back to back in wqkv, gate and up rows in w13. After a tensor
 * is converted its source pages are dropped, so peak RSS stays near the f32
 * size rather than f32 + file size.
 *
 * Tied embeddings: lm_head points at embed. A checkpoint that is tied but
 * still carries lm_head.weight is accepted; that tensor is shape-checked and
 * ignored, as transformers does when it re-ties the weights after loading.
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
#include <sys/mman.h>
#include <time.h>

typedef struct {
    char name[96];
    int64_t rows, cols;     /* cols == 0: a 1-D tensor of `rows` elements */
    size_t off;             /* float offset in the arena */
} Want;

typedef struct {
    float *arena;           /* anonymous mapping of arena_bytes */
    size_t arena_bytes;
} Priv;

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

static void want(Want *w, int *n, size_t *off, const char *name, int64_t rows, int64_t cols) {
    Want *x = &w[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->rows = rows;
    x->cols = cols;
    x->off = *off;
    *off += (size_t)rows * (size_t)(cols ? cols : 1);
}

/* Lists every tensor with its arena offset. Fused parts are laid out back to
 * back (no alignment gap) so that wqkv and w13 are single matrices. */
static int plan(const ModelConfig *c, Want *w, size_t *total) {
    int n = 0;
    size_t off = 0;
    char nm[96];
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    want(w, &n, &off, "model.embed_tokens.weight", c->vocab_size, c->dim);
    off = align16(off);
    for (int l = 0; l < c->n_layers; l++) {
#define W(suffix, r, k) (snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, suffix), want(w, &n, &off, nm, r, k))
        W("input_layernorm", c->dim, 0); off = align16(off);
        W("self_attn.q_proj", q, c->dim);
        W("self_attn.k_proj", kv, c->dim);
        W("self_attn.v_proj", kv, c->dim); off = align16(off);
        W("self_attn.o_proj", c->dim, q); off = align16(off);
        W("post_attention_layernorm", c->dim, 0); off = align16(off);
        W("mlp.gate_proj", c->hidden_dim, c->dim);
        W("mlp.up_proj", c->hidden_dim, c->dim); off = align16(off);
        W("mlp.down_proj", c->dim, c->hidden_dim); off = align16(off);
#undef W
    }
    want(w, &n, &off, "model.norm.weight", c->dim, 0);
    off = align16(off);
    if (!c->tied) want(w, &n, &off, "lm_head.weight", c->vocab_size, c->dim);
    *total = align16(off);
    return n;
}

static void point_weights(Model *m, const Want *w, float *a) {
    int per = 9;
    m->w.embed = a + w[0].off;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const Want *x = w + 1 + l * per;
        LayerWeights *L = &m->w.layers[l];
        L->attn_norm = a + x[0].off;
        L->wqkv = a + x[1].off;
        L->wo = a + x[4].off;
        L->mlp_norm = a + x[5].off;
        L->w13 = a + x[6].off;
        L->w2 = a + x[8].off;
    }
    int tail = 1 + m->cfg.n_layers * per;
    m->w.final_norm = a + w[tail].off;
    m->w.lm_head = m->cfg.tied ? m->w.embed : a + w[tail + 1].off;
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
            Want lm = {"lm_head.weight", c->vocab_size, c->dim, 0};
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

static void convert(const StSet *s, const Want *w, int n, float *arena) {
    const size_t chunk = 1 << 18;
    for (int i = 0; i < n; i++) {
        const StTensor *t = st_find(s, w[i].name);
        long nch = (long)((t->nelem + chunk - 1) / chunk);
        #pragma omp parallel for schedule(static)
        for (long k = 0; k < nch; k++) {
            size_t first = (size_t)k * chunk, len = t->nelem - first < chunk ? t->nelem - first : chunk;
            st_to_f32(t, first, len, arena + w[i].off + first);
            st_release(t, first, len);
        }
    }
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

static long peak_rss_kb(void) {
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
    size_t total;
    int n = plan(c, w, &total), rc = -1;
    Priv *p = m->priv;
    if (match(s, c, w, n, err, errlen)) goto out;
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.layers || alloc_arena(p, total * sizeof(float))) {
        errmsg(err, errlen, "cannot allocate %zu bytes for the f32 weights", total * sizeof(float));
        goto out;
    }
    convert(s, w, n, p->arena);
    point_weights(m, w, p->arena);
    m->weight_bytes = total * sizeof(float);
    rc = 0;
out:
    free(w);
    return rc;
}

Model *model_load(const char *dir, char *err, size_t errlen) {
    double t0 = now();
    char path[4096];
    StSet s;
    Model *m = calloc(1, sizeof *m);
    if (!m || !(m->priv = calloc(1, sizeof(Priv)))) {
        free(m);
        errmsg(err, errlen, "out of memory");
        return NULL;
    }
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
    m->peak_rss_kb = peak_rss_kb();
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
