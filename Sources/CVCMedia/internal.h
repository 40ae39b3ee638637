/* Shared helpers of the CVCMedia C files (not part of the public header). */
#ifndef CVCMEDIA_INTERNAL_H
#define CVCMEDIA_INTERNAL_H
#include <stddef.h>

/* printf-style message into a caller buffer (NULL or size 0: ignored). */
void vcm_set_error(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
