/*
 * utf8: the one reading of UTF-8 that the log's and herald audit's
 * cleaners share: how long the well-formed sequence at a byte is.
 */
#ifndef HERALD_UTF8_H
#define HERALD_UTF8_H

#include <stddef.h>

/*
 * The length of the well-formed UTF-8 sequence that starts at s (1 to 4),
 * or 0: a stray or overlong byte, a surrogate, past U+10FFFF, or a
 * sequence cut short (the NUL that ends s is not a continuation byte).
 */
size_t utf8_length(const unsigned char *s);

#endif
