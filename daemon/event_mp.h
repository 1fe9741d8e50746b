/* event_mp.h - internal to the event codec: a bounded msgpack reader.
 *
 * msgpack-c's unpacker allocates memory for a container from the count in its
 * header before seeing the elements, so a 5-byte "array of 4 billion" can make
 * it allocate gigabytes. This reader instead walks the buffer in place and
 * never allocates: every length is checked against the bytes that remain (a
 * container of n elements needs at least n more bytes), strings and bins are
 * returned as pointers into the buffer. Skipping a value is iterative, so deep
 * nesting cannot overflow the stack.
 */
#ifndef GUARDD_EVENT_MP_H
#define GUARDD_EVENT_MP_H
#include <stddef.h>
#include <stdint.h>

typedef enum { MP_NIL, MP_BOOL, MP_INT, MP_UINT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT } MpType;

typedef struct {
    const uint8_t *p, *end;
} MpCur;

typedef struct {
    MpType type;
    int b;              /* MP_BOOL */
    int64_t i;          /* MP_INT (negative or fits int64) */
    uint64_t u;         /* MP_UINT (also set for non-negative MP_INT) */
    double f;           /* MP_FLOAT */
    const uint8_t *data;/* MP_STR, MP_BIN, MP_EXT payload */
    uint32_t len;       /* bytes for STR/BIN/EXT, elements for ARRAY, pairs for MAP */
    int8_t ext_type;
} MpItem;

/* Reads one item; containers yield only their header (the cursor then sits on
 * the first element). Returns 0, or -1 if the bytes are truncated or invalid. */
int mp_next(MpCur *c, MpItem *it);
/* Skips one complete value. Returns 0 or -1. */
int mp_skip(MpCur *c);
/* The same, allowing at most max_depth nested containers (a map or array,
 * empty or not, is one level; a scalar none); max_depth <= MP_MAX_DEPTH.
 * Returns 0, -1 if malformed or truncated, -2 if nested deeper. */
#define MP_MAX_DEPTH 64
int mp_skip_depth(MpCur *c, int max_depth);
/* 1 if the item is a string equal to s. */
int mp_str_eq(const MpItem *it, const char *s);

#endif
