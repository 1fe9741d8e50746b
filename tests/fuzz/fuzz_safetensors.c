/* fuzz_safetensors.c - libFuzzer harness for the safetensors reader
 * (model/safetensors.c): the input is a whole model.safetensors file (8-byte
 * header length, JSON header, data area) opened with st_open_file().
 *
 * When the file is accepted, every tensor is looked up by name and converted
 * to f32 (which reads all its bytes): the header validation promised they are
 * inside the mapping. Since mmapped memory is not tracked by AddressSanitizer,
 * the harness also checks the promise directly: each tensor's bytes lie in the
 * data area of the file.
 */
#include "fuzz_common.h"
#include "safetensors.h"
#include <string.h>

static FuzzFile file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_file_init(&file, "model.safetensors");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    StSet set;
    char err[512];
    fuzz_file_set(&file, data, size);
    if (st_open_file(&set, file.path, err, sizeof err) == 0) {
        const StFile *f = &set.files[0];
        const unsigned char *lo = f->map + 8 + f->header_len, *hi = f->map + f->size;
        for (int i = 0; i < set.n_tensors; i++) {
            const StTensor *t = &set.tensors[i];
            FUZZ_ASSERT(st_find(&set, t->name) == t, "st_find does not find tensor \"%s\"", t->name);
            FUZZ_ASSERT(t->data >= lo && t->data + t->nbytes <= hi, "tensor \"%s\" outside the data area", t->name);
            FUZZ_ASSERT(t->nbytes == t->nelem * st_dtype_size(t->dtype), "tensor \"%s\" byte count", t->name);
            char shape[128];
            st_shape_str(t, shape, sizeof shape);
            if (t->nelem <= (1u << 16)) {
                float *dst = malloc((t->nelem ? t->nelem : 1) * sizeof *dst);
                if (dst) st_to_f32(t, 0, t->nelem, dst);
                free(dst);
            }
        }
        st_close(&set);
    } else {
        FUZZ_ASSERT(err[0], "st_open_file failed without a message");
    }
    fuzz_check_fds(&file, "st_open_file");
    return 0;
}
