/* blis_quiet.h - includes blis.h with its header-only warnings silenced.
 * BLIS's public header trips -Wextra (unused parameters and static inline
 * helpers); the build must stay warning-free, so every file that needs BLIS
 * includes this instead of <blis.h>. */
#ifndef GUARDD_BLIS_QUIET_H
#define GUARDD_BLIS_QUIET_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <blis.h>
#pragma GCC diagnostic pop
#endif
