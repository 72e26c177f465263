/*
 * methods: server methods that remote clients call (`call` → `result`).
 * A method is a file scripts/methods/NAME.lua returning a function; it is
 * loaded on first call, reloaded when the file changes, and runs in the
 * sandbox as a process of type 1 owned by the caller's session.
 */
#ifndef HERALD_METHODS_H
#define HERALD_METHODS_H

#include <lua.h>

#include "session.h"

struct server;

/* Handles the call frame at the top of L's stack (left there) from session
 * s: starts the method's process, or answers an error result at once.
 * A server_call_fn, data being the server (serve.c registers it). */
void methods_call(void *srv, session_t *s, lua_State *L);

/* 1 when name may name a method: letters, digits and '_' only, 1 to 64. */
int methods_valid_name(const char *name);

#endif
