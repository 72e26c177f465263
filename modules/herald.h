/*
 * herald: the native functions and constants of API.md, as Lua globals.
 */
#ifndef HERALD_HERALD_H
#define HERALD_HERALD_H

#include <lua.h>

struct server;

/*
 * Registers the natives as globals of L and lists them in the registry
 * (herald.natives) for the sandbox. srv is NULL for a standalone runtime
 * (`herald run --local`), where the server-only functions do nothing.
 */
void herald_open(lua_State *L, struct server *srv);

/* Pushes the session object of API.md for session id, or nil. */
void herald_push_session(lua_State *L, struct server *srv, const char *id);

#endif
