/* errmsg.h - the one way guardd's modules report an error to their caller.
 *
 * Functions that can fail take (char *err, size_t errlen) and, on failure,
 * write one human-readable line there. errmsg() formats that line; it accepts
 * a NULL or empty buffer (the caller did not want the text) and always
 * returns -1 so a failure path can be written `return errmsg(err, errlen, ...)`.
 */
#ifndef GUARDD_ERRMSG_H
#define GUARDD_ERRMSG_H
#include <stddef.h>

__attribute__((format(printf, 3, 4)))
int errmsg(char *err, size_t errlen, const char *fmt, ...);

#endif
