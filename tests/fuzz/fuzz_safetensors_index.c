/* fuzz_safetensors_index.c - libFuzzer harness for sharded checkpoints
 * (model/safetensors.c, st_open_dir with model.safetensors.index.json): the
 * input is the index file; the directory also holds two fixed, valid shards
 * (a.safetensors: tensors "x", "y"; b.safetensors: tensor "z"), written once
 * at start-up. The index's weight_map decides which shards are opened and
 * must agree with their contents in both directions; shard names are plain
 * file names only (no '/', "." or "..").
 *
 * Properties of an accepted checkpoint: its tensors are exactly the ones the
 * index names, each found by st_find in the shard the index says.
 */
#include "fuzz_common.h"
#include "safetensors.h"
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

static char dir[64], index_path[128];

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) { perror(path); abort(); }
}

/* A shard: 8-byte little-endian header length, the header, the data. */
static void write_shard(const char *name, const char *header, size_t data_len) {
    char path[128], buf[512] = {0};
    size_t h = strlen(header);
    for (int i = 0; i < 8; i++) buf[i] = (char)(h >> (8 * i));
    memcpy(buf + 8, header, h);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, buf, 8 + h + data_len);
}

static void cleanup(void) {
    const char *names[] = {"a.safetensors", "b.safetensors", "model.safetensors.index.json"};
    char path[128];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    snprintf(dir, sizeof dir, "/tmp/guardd-fuzz-st.XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    write_shard("a.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"y\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[8,14]}}", 14);
    write_shard("b.safetensors", "{\"__metadata__\":{\"format\":\"pt\"},"
                                 "\"z\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]}}", 2);
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    StSet set;
    char err[1024];
    err[0] = 0;
    write_file(index_path, data, size);
    if (st_open_dir(&set, dir, err, sizeof err) == 0) {
        json_t *root = json_loadb((const char *)data, size, 0, NULL);
        json_t *wm = json_object_get(root, "weight_map");
        FUZZ_ASSERT(json_is_object(wm) && json_object_size(wm) == (size_t)set.n_tensors,
                    "%d tensors opened, the index names %zu", set.n_tensors, json_object_size(wm));
        const char *name;
        json_t *v;
        json_object_foreach(wm, name, v) {
            const StTensor *t = st_find(&set, name);
            FUZZ_ASSERT(t, "tensor \"%s\" in the index was not opened", name);
            const char *p = st_path(&set, t), *slash = strrchr(p, '/');
            FUZZ_ASSERT(slash && !strcmp(slash + 1, json_string_value(v)), "tensor \"%s\" in %s, index says %s",
                        name, p, json_string_value(v));
        }
        json_decref(root);
        st_close(&set);
    } else {
        FUZZ_ASSERT(err[0], "st_open_dir failed without a message");
    }
    return 0;
}
