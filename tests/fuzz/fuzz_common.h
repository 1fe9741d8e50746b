/* fuzz_common.h - helpers shared by the libFuzzer harnesses in tests/fuzz/.
 *
 * Most of guardd's parsers take a path (config.json, tokenizer.json,
 * model.safetensors, guardd.conf), so the harnesses hand them the fuzz input as
 * a file: one memfd per process, rewritten for each input and opened through
 * /proc/self/fd/N (no disk writes, works with mmap). fuzz_check_fds() turns
 * a descriptor of the input left open by a parser into a crash, which
 * LeakSanitizer would not report.
 */
#ifndef GUARDD_FUZZ_COMMON_H
#define GUARDD_FUZZ_COMMON_H
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "tokenizer.h"

typedef struct {
    int fd;
    char path[64];
} FuzzFile;

static inline void fuzz_file_init(FuzzFile *f, const char *name) {
    f->fd = memfd_create(name, MFD_CLOEXEC);
    if (f->fd < 0) { perror("memfd_create"); abort(); }
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

/* Replaces the file's contents with data[0..size). */
static inline void fuzz_file_set(FuzzFile *f, const uint8_t *data, size_t size) {
    if (ftruncate(f->fd, 0) != 0) { perror("ftruncate"); abort(); }
    size_t off = 0;
    while (off < size) {
        ssize_t n = pwrite(f->fd, data + off, size - off, (off_t)off);
        if (n <= 0) { perror("pwrite"); abort(); }
        off += (size_t)n;
    }
}

/* Aborts if a descriptor other than f's own still refers to f's memfd: the
 * parser opened the input and did not close it. (Counting descriptors would
 * also catch libraries that open one lazily and keep it, which is fine.) */
static inline void fuzz_check_fds(const FuzzFile *f, const char *what) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) { perror("opendir /proc/self/fd"); abort(); }
    char own[256], link[256], p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", f->fd);
    ssize_t n = readlink(p, own, sizeof own - 1);
    if (n < 0) { perror("readlink"); abort(); }
    own[n] = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == f->fd || fd == dirfd(d)) continue;
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        n = readlink(p, link, sizeof link - 1);
        if (n < 0) continue;
        link[n] = 0;
        if (!strcmp(link, own)) {
            fprintf(stderr, "%s leaked file descriptor %d (the input file, %s)\n", what, fd, own);
            abort();
        }
    }
    closedir(d);
}

/* The tokenizer named by $GUARDD_TOKENIZER (the genuine Llama 3.2 file in
 * make check and make fuzz), loaded once at start-up; exits 2 without it. */
static inline Tokenizer *fuzz_load_tokenizer(const char *who) {
    const char *path = getenv("GUARDD_TOKENIZER");
    char err[512];
    Tokenizer *t = path ? tokenizer_load(path, err, sizeof err) : NULL;
    if (!t) {
        fprintf(stderr, "%s: %s\n", who, path ? err : "set GUARDD_TOKENIZER to a tokenizer.json");
        exit(2);
    }
    return t;
}

/* Aborts with a message: a property the harness checks does not hold. */
#define FUZZ_ASSERT(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz property failed: " __VA_ARGS__); \
    fputc('\n', stderr); abort(); } } while (0)

#endif
