/* safetensors.h - read-only access to safetensors checkpoints.
 *
 * A checkpoint is one model.safetensors file or a model.safetensors.index.json
 * whose "weight_map" names the shard file holding each tensor. Files are
 * mmapped; tensors point into the mappings. Headers are untrusted: lengths,
 * dtypes, shapes and offsets are all validated (in bounds, byte count equal to
 * the shape's element count times the dtype size, no two tensors overlapping)
 * and every error names the file and, where there is one, the tensor.
 */
#ifndef GUARDD_SAFETENSORS_H
#define GUARDD_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_NAME 256
#define ST_MAX_HEADER (100u << 20)   /* header JSON bytes */
#define ST_MAX_FILES 1024
#define ST_MAX_TENSORS 100000        /* per checkpoint (Llama 3.2 1B has 147) */

typedef enum { ST_BF16 = 0, ST_F16 = 1, ST_F32 = 2 } StDtype;

typedef struct {
    char name[ST_MAX_NAME];
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nelem, nbytes;
    const unsigned char *data;   /* inside the file mapping; may be unaligned */
    int file;                    /* index into StSet.files */
} StTensor;

typedef struct {
    char *path;
    unsigned char *map;
    size_t size;
    size_t header_len;           /* JSON bytes after the 8-byte length */
    int fd;                      /* open read-only for st_read; -1 if not */
} StFile;

typedef struct {
    StFile *files;
    int n_files;
    StTensor *tensors;           /* sorted by name once opened */
    int n_tensors;
    char *index_path;            /* sharded checkpoints: the index file */
} StSet;

/* Opens dir/model.safetensors.index.json if present, else dir/model.safetensors.
 * Returns 0, or -1 with err set (and nothing left open). */
int st_open_dir(StSet *set, const char *dir, char *err, size_t errlen);
/* Opens a single safetensors file. */
int st_open_file(StSet *set, const char *path, char *err, size_t errlen);
void st_close(StSet *set);

const StTensor *st_find(const StSet *set, const char *name);
/* The file a tensor lives in (for error messages). */
const char *st_path(const StSet *set, const StTensor *t);
size_t st_dtype_size(StDtype d);
const char *st_dtype_name(StDtype d);
/* Converts elements [first, first+n) of t to f32 (through the mapping). */
void st_to_f32(const StTensor *t, size_t first, size_t n, float *dst);
/* Decodes n stored elements of dtype d at src (any alignment) to f32. */
void st_decode_f32(StDtype d, const void *src, size_t n, float *dst);
/* Copies elements [first, first+n) of t, as stored (little-endian, t's
 * dtype), to dst. Reads the file with pread, which copies from the page
 * cache without mapping it into this process: no page faults and no file
 * pages resident here (a loader reading gigabytes through the mapping spends
 * most of its time faulting them in and counts them in its RSS). If pread
 * fails, copies from the mapping and drops those pages again. */
void st_read(const StSet *set, const StTensor *t, size_t first, size_t n, void *dst);
/* Formats t's shape as "[a, b]" into buf. */
void st_shape_str(const StTensor *t, char *buf, size_t len);
#endif
