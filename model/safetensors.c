/* safetensors.c - validating reader for safetensors files and sharded sets.
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON mapping
 * tensor names to {dtype, shape, data_offsets:[begin,end]} (plus an optional
 * "__metadata__" object), then the data area that offsets are relative to.
 * We mmap the whole file read-only and check everything before any tensor is
 * handed out: N against the file size and ST_MAX_HEADER, the JSON, each
 * tensor's dtype/shape/offsets (with overflow-checked products) and, after
 * sorting by offset, that no two tensors overlap. Shards listed by an index
 * must agree exactly with the index's weight_map.
 */
#include "errmsg.h"
#include "safetensors.h"
#include "bf16.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

size_t st_dtype_size(StDtype d) { return d == ST_F32 ? 4 : 2; }
const char *st_dtype_name(StDtype d) { return d == ST_BF16 ? "BF16" : d == ST_F16 ? "F16" : "F32"; }

static int parse_dtype(const char *s, StDtype *d) {
    if (!strcmp(s, "BF16")) *d = ST_BF16;
    else if (!strcmp(s, "F16")) *d = ST_F16;
    else if (!strcmp(s, "F32")) *d = ST_F32;
    else return -1;
    return 0;
}

void st_shape_str(const StTensor *t, char *buf, size_t len) {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

/* Fills t->shape/ndim/nelem from a JSON array; element counts are checked
 * against overflow so nbytes below is exact. */
static int parse_shape(json_t *sh, StTensor *t, const char *path, char *err, size_t errlen) {
    if (!json_is_array(sh) || json_array_size(sh) > ST_MAX_DIMS)
        return errmsg(err, errlen, "%s: tensor \"%s\": shape must be a list of at most %d integers",
                    path, t->name, ST_MAX_DIMS);
    size_t i, n = 1;
    json_t *v;
    json_array_foreach(sh, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return errmsg(err, errlen, "%s: tensor \"%s\": shape[%zu] is not a non-negative integer",
                        path, t->name, i);
        size_t d = (size_t)json_integer_value(v);
        if (__builtin_mul_overflow(n, d, &n))
            return errmsg(err, errlen, "%s: tensor \"%s\": shape element count overflows", path, t->name);
        t->shape[i] = (int64_t)d;
    }
    t->ndim = (int)json_array_size(sh);
    t->nelem = n;
    return 0;
}

static int parse_offsets(json_t *off, StTensor *t, const StFile *f, char *err, size_t errlen) {
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) || !json_is_integer(e) ||
        json_integer_value(b) < 0 || json_integer_value(e) < 0)
        return errmsg(err, errlen, "%s: tensor \"%s\": data_offsets must be [begin, end] non-negative integers",
                    f->path, t->name);
    size_t begin = (size_t)json_integer_value(b), end = (size_t)json_integer_value(e);
    size_t data_len = f->size - 8 - f->header_len;
    if (begin > end || end > data_len)
        return errmsg(err, errlen, "%s: tensor \"%s\": data_offsets [%zu, %zu] out of bounds (data area is %zu bytes)",
                    f->path, t->name, begin, end, data_len);
    if (__builtin_mul_overflow(t->nelem, st_dtype_size(t->dtype), &t->nbytes) || t->nbytes != end - begin)
        return errmsg(err, errlen, "%s: tensor \"%s\": data_offsets span %zu bytes but shape and dtype need %zu",
                    f->path, t->name, end - begin, t->nbytes);
    t->data = f->map + 8 + f->header_len + begin;
    return 0;
}

static int parse_entry(const char *key, json_t *v, StTensor *t, const StFile *f, char *err, size_t errlen) {
    if (strlen(key) >= ST_MAX_NAME || !*key)
        return errmsg(err, errlen, "%s: tensor name \"%.40s...\" is empty or longer than %d bytes",
                    f->path, key, ST_MAX_NAME - 1);
    memset(t, 0, sizeof *t);
    strcpy(t->name, key);
    if (!json_is_object(v)) return errmsg(err, errlen, "%s: tensor \"%s\": entry is not an object", f->path, key);
    json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt)) return errmsg(err, errlen, "%s: tensor \"%s\": missing dtype", f->path, key);
    if (parse_dtype(json_string_value(dt), &t->dtype))
        return errmsg(err, errlen, "%s: tensor \"%s\": unsupported dtype \"%.16s\" (BF16, F16, F32 only)",
                    f->path, key, json_string_value(dt));
    if (parse_shape(json_object_get(v, "shape"), t, f->path, err, errlen)) return -1;
    return parse_offsets(json_object_get(v, "data_offsets"), t, f, err, errlen);
}

static int by_data(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

/* Tensors of one file, sorted by position: each non-empty one must start at
 * or after the furthest end seen so far (not just the previous tensor's end:
 * an empty tensor in between must not hide an overlap). */
static int check_overlaps(StTensor *t, int n, const char *path, char *err, size_t errlen) {
    qsort(t, (size_t)n, sizeof *t, by_data);
    int far = 0;   /* the tensor reaching furthest so far */
    for (int i = 1; i < n; i++) {
        if (t[i].nbytes > 0 && t[far].data + t[far].nbytes > t[i].data)
            return errmsg(err, errlen, "%s: tensor \"%s\" overlaps tensor \"%s\"", path, t[i].name, t[far].name);
        if (t[i].data + t[i].nbytes > t[far].data + t[far].nbytes) far = i;
    }
    return 0;
}

static int parse_header(StSet *set, int fi, char *err, size_t errlen) {
    StFile *f = &set->files[fi];
    json_error_t je;
    json_t *root = json_loadb((const char *)f->map + 8, f->header_len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return errmsg(err, errlen, "%s: header is not valid JSON (%s at byte %d)", f->path, je.text, je.position);
    int rc = -1;
    if (!json_is_object(root)) { errmsg(err, errlen, "%s: header is not a JSON object", f->path); goto out; }
    size_t cap = (size_t)set->n_tensors + json_object_size(root);
    if (cap > ST_MAX_TENSORS) {   /* bounds the table below, whatever the header says */
        errmsg(err, errlen, "%s: more than %d tensors", f->path, ST_MAX_TENSORS);
        goto out;
    }
    StTensor *nt = realloc(set->tensors, (cap ? cap : 1) * sizeof *nt);
    if (!nt) { errmsg(err, errlen, "%s: out of memory", f->path); goto out; }
    set->tensors = nt;
    int first = set->n_tensors;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) { errmsg(err, errlen, "%s: __metadata__ is not an object", f->path); goto out; }
            continue;
        }
        StTensor *t = &set->tensors[set->n_tensors];
        if (parse_entry(key, v, t, f, err, errlen)) goto out;
        t->file = fi;
        set->n_tensors++;
    }
    rc = check_overlaps(set->tensors + first, set->n_tensors - first, f->path, err, errlen);
out:
    json_decref(root);
    return rc;
}

static int map_file(StFile *f, char *err, size_t errlen) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errmsg(err, errlen, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) { errmsg(err, errlen, "%s: not a regular file", f->path); goto out; }
    f->size = (size_t)st.st_size;
    if (f->size < 8) { errmsg(err, errlen, "%s: truncated: %zu bytes, no header length", f->path, f->size); goto out; }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) { f->map = NULL; errmsg(err, errlen, "%s: mmap: %s", f->path, strerror(errno)); goto out; }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->map[i];
    if (n == 0 || n > ST_MAX_HEADER || n > f->size - 8) {
        errmsg(err, errlen, "%s: header length %llu is zero, exceeds %u or runs past the %zu-byte file",
             f->path, (unsigned long long)n, ST_MAX_HEADER, f->size);
        goto out;
    }
    f->header_len = (size_t)n;
    f->fd = fd;   /* kept for st_read */
    return 0;
out:
    close(fd);
    return rc;
}

/* Maps and parses path as file number set->n_files. */
static int add_file(StSet *set, const char *path, char *err, size_t errlen) {
    if (set->n_files >= ST_MAX_FILES) return errmsg(err, errlen, "%s: too many shard files", path);
    StFile *nf = realloc(set->files, (size_t)(set->n_files + 1) * sizeof *nf);
    if (!nf) return errmsg(err, errlen, "%s: out of memory", path);
    set->files = nf;
    StFile *f = &set->files[set->n_files];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (!(f->path = strdup(path))) return errmsg(err, errlen, "%s: out of memory", path);
    set->n_files++;
    if (map_file(f, err, errlen)) return -1;
    return parse_header(set, set->n_files - 1, err, errlen);
}

static int by_name(const void *a, const void *b) { return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name); }

static int finish(StSet *set, char *err, size_t errlen) {
    qsort(set->tensors, (size_t)set->n_tensors, sizeof *set->tensors, by_name);
    for (int i = 1; i < set->n_tensors; i++)
        if (!strcmp(set->tensors[i].name, set->tensors[i - 1].name))
            return errmsg(err, errlen, "%s: tensor \"%s\" also appears in %s", st_path(set, &set->tensors[i]),
                        set->tensors[i].name, st_path(set, &set->tensors[i - 1]));
    return 0;
}

int st_open_file(StSet *set, const char *path, char *err, size_t errlen) {
    memset(set, 0, sizeof *set);
    if (add_file(set, path, err, errlen) || finish(set, err, errlen)) { st_close(set); return -1; }
    return 0;
}

/* Shard names come from an untrusted index: plain file names only. */
static int safe_basename(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") && strlen(s) < 256;
}

static int find_file(const StSet *set, const char *path) {
    for (int i = 0; i < set->n_files; i++)
        if (!strcmp(set->files[i].path, path)) return i;
    return -1;
}

/* Opens every shard the weight_map names, then checks that the map and the
 * shards' contents agree in both directions. */
static int open_shards(StSet *set, const char *dir, json_t *wm, char *err, size_t errlen) {
    const char *key;
    json_t *v;
    char path[4096];
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v) || !safe_basename(json_string_value(v)))
            return errmsg(err, errlen, "%s: weight_map entry for tensor \"%.200s\" is not a plain file name",
                        set->index_path, key);
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(v));
        if (find_file(set, path) < 0 && add_file(set, path, err, errlen)) return -1;
    }
    if (finish(set, err, errlen)) return -1;
    json_object_foreach(wm, key, v) {
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(v));
        const StTensor *t = st_find(set, key);
        if (!t) return errmsg(err, errlen, "%s: tensor \"%.200s\" listed in the index is missing from the shard", path, key);
        if (t->file != find_file(set, path))
            return errmsg(err, errlen, "%s: tensor \"%s\" is in %s, not in %s as the index says",
                        set->index_path, t->name, st_path(set, t), path);
    }
    for (int i = 0; i < set->n_tensors; i++)
        if (!json_object_get(wm, set->tensors[i].name))
            return errmsg(err, errlen, "%s: tensor \"%s\" is not listed in %s", st_path(set, &set->tensors[i]),
                        set->tensors[i].name, set->index_path);
    return 0;
}

static int open_index(StSet *set, const char *dir, char *err, size_t errlen) {
    json_error_t je;
    struct stat st;
    if (stat(set->index_path, &st) || st.st_size > (off_t)ST_MAX_HEADER)
        return errmsg(err, errlen, "%s: unreadable or larger than %u bytes", set->index_path, ST_MAX_HEADER);
    json_t *root = json_load_file(set->index_path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return errmsg(err, errlen, "%s: invalid JSON at line %d: %s", set->index_path, je.line, je.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc;
    if (!json_is_object(wm) || json_object_size(wm) == 0)
        rc = errmsg(err, errlen, "%s: missing or empty \"weight_map\" object", set->index_path);
    else
        rc = open_shards(set, dir, wm, err, errlen);
    json_decref(root);
    return rc;
}

int st_open_dir(StSet *set, const char *dir, char *err, size_t errlen) {
    char path[4096];
    memset(set, 0, sizeof *set);
    if (snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir) >= (int)sizeof path - 300)
        return errmsg(err, errlen, "%s: directory path too long", dir);
    if (access(path, F_OK) == 0) {
        if (!(set->index_path = strdup(path))) return errmsg(err, errlen, "%s: out of memory", path);
        if (open_index(set, dir, err, errlen)) { st_close(set); return -1; }
        return 0;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) != 0)
        return errmsg(err, errlen, "%s: no model.safetensors or model.safetensors.index.json", dir);
    return st_open_file(set, path, err, errlen);
}

void st_close(StSet *set) {
    for (int i = 0; i < set->n_files; i++) {
        if (set->files[i].map) munmap(set->files[i].map, set->files[i].size);
        if (set->files[i].fd >= 0) close(set->files[i].fd);
        free(set->files[i].path);
    }
    free(set->files);
    free(set->tensors);
    free(set->index_path);
    memset(set, 0, sizeof *set);
}

const StTensor *st_find(const StSet *set, const char *name) {
    StTensor key;
    if (strlen(name) >= ST_MAX_NAME || !set->tensors) return NULL;
    strcpy(key.name, name);
    return bsearch(&key, set->tensors, (size_t)set->n_tensors, sizeof key, by_name);
}

const char *st_path(const StSet *set, const StTensor *t) { return set->files[t->file].path; }

void st_decode_f32(StDtype d, const void *src, size_t n, float *dst) {
    const unsigned char *p = src;
    uint16_t h;
    switch (d) {
    case ST_BF16: {
        size_t i = 0;
        /* blocks of a fixed count: the compiler vectorizes these at -O2 */
        for (; i + 16 <= n; i += 16) {
            uint16_t b[16];
            memcpy(b, p + 2 * i, sizeof b);
            for (int j = 0; j < 16; j++) dst[i + j] = bf16_to_f32(b[j]);
        }
        for (; i < n; i++) { memcpy(&h, p + 2 * i, 2); dst[i] = bf16_to_f32(h); }
        break;
    }
    case ST_F16:
        for (size_t i = 0; i < n; i++) { memcpy(&h, p + 2 * i, 2); dst[i] = f16_to_f32(h); }
        break;
    case ST_F32:
        memcpy(dst, p, n * 4);
        break;
    }
}

void st_to_f32(const StTensor *t, size_t first, size_t n, float *dst) {
    st_decode_f32(t->dtype, t->data + first * st_dtype_size(t->dtype), n, dst);
}

/* Drops the mapped pages of elements [first, first+n) of t once copied: whole
 * pages strictly inside the range only, neighbours may still be needed (the
 * data stays readable, re-faulted). */
static void release(const StTensor *t, size_t first, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    size_t esz = st_dtype_size(t->dtype);
    uintptr_t b = (uintptr_t)t->data + first * esz, e = b + n * esz;
    uintptr_t pb = (b + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1), pe = e & ~((uintptr_t)pg - 1);
    if (pe > pb) madvise((void *)pb, pe - pb, MADV_DONTNEED);
}

void st_read(const StSet *set, const StTensor *t, size_t first, size_t n, void *dst) {
    const StFile *f = &set->files[t->file];
    size_t esz = st_dtype_size(t->dtype), len = n * esz, done = 0;
    const unsigned char *src = t->data + first * esz;
    while (f->fd >= 0 && done < len) {
        ssize_t k = pread(f->fd, (char *)dst + done, len - done, (off_t)(src - f->map) + (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    if (done < len) {
        memcpy((char *)dst + done, src + done, len - done);
        release(t, first, n);
    }
}
