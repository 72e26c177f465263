/*
 * text: small string helpers shared by the runtime.
 */
#ifndef HERALD_TEXT_H
#define HERALD_TEXT_H

#include <string.h>

/* Whether s starts with the string literal lit (its length counted by the
 * compiler, not by hand). */
#define TEXT_STARTS_WITH(s, lit) (strncmp((s), (lit), sizeof(lit) - 1) == 0)

#endif
