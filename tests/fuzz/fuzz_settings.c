/* fuzz_settings.c - libFuzzer harness for guardd's configuration layer
 * (daemon/settings.c on libconfig): the input is a guardd.conf file given to
 * settings_load(), as `guardd --check-config` and a SIGHUP reload do.
 *
 * An accepted configuration is dumped (settings_dump, the startup log) and
 * freed; a refused one must say why. Inputs with an @include directive are
 * skipped: an include names another file on the machine (e.g. /dev/stdin),
 * which is the operator's choice, not something a parser can bound.
 */
#include "fuzz_common.h"
#include "settings.h"
#include <string.h>

static FuzzFile file;
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_file_init(&file, "guardd.conf");
    devnull = fopen("/dev/null", "w");
    if (!devnull) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (memmem(data, size, "@include", 8)) return -1;   /* -1: not added to the corpus */
    Settings s;
    char err[1024];
    fuzz_file_set(&file, data, size);
    if (settings_load(file.path, &s, err, sizeof err) == 0) {
        settings_dump(&s, devnull);
        for (int i = 0; i < s.n_props; i++) (void)settings_redacted(&s.props[i]);
        settings_free(&s);
    } else {
        FUZZ_ASSERT(err[0], "settings_load failed without a message");
    }
    fuzz_check_fds(&file, "settings_load");
    return 0;
}
