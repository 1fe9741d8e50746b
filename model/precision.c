/* precision.c - names of the weights' stored forms (contract: weights.h).
 * Kept apart from the kernels so configuration parsing links without them. */
#include <string.h>
#include "weights.h"

int precision_parse(const char *s, Precision *out) {
    static const char *const names[] = {"auto", "f32", "bf16", "int8"};
    for (int i = 0; s && i < 4; i++)
        if (!strcmp(s, names[i])) { *out = (Precision)i; return 0; }
    return -1;
}

const char *precision_name(Precision p) {
    switch (p) {
    case PREC_F32: return "f32";
    case PREC_BF16: return "bf16";
    case PREC_INT8: return "int8";
    default: return "auto";
    }
}

Precision precision_resolve(Precision p) { return p == PREC_AUTO ? PREC_BF16 : p; }
