/*
 * jsonline: the client side of a JSON-lines stream over a blocking socket,
 * for the command-line tools that talk to the admin socket (`herald run`,
 * `herald console`). JSON goes through lua-cjson in a private Lua state.
 */
#ifndef HERALD_JSONLINE_H
#define HERALD_JSONLINE_H

#include <lua.h>

typedef struct jsonline jsonline_t;

/* Connects to the Unix socket at path; NULL with errno set on failure. */
jsonline_t *jsonline_connect_unix(const char *path);
void jsonline_close(jsonline_t *j);
/* The private state: build a frame as a table on it, then send. */
lua_State *jsonline_lua(jsonline_t *j);
int jsonline_fd(const jsonline_t *j);
/* Encodes the table at the top of the stack (popped) and sends it as one
 * line. Returns 0 or -1. */
int jsonline_send(jsonline_t *j);
/*
 * Pushes the next frame (a table) and returns 1; returns 0 at the end of
 * the stream and -1 for an unreadable frame (nothing pushed). Blocks.
 */
int jsonline_recv(jsonline_t *j);
/* 1 when a whole line is already buffered (recv will not block). */
int jsonline_buffered(const jsonline_t *j);

#endif
