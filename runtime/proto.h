/*
 * proto: frames of the wire protocol (PROTOCOL.md). Decoding validates
 * UTF-8 and hands the text to lua-cjson; encoding quotes strings with
 * lua-cjson and lays the frame out around them, so a message frame costs
 * one encode however many sessions receive it.
 */
#ifndef HERALD_PROTO_H
#define HERALD_PROTO_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "outbuf.h"

#define PROTO_VERSION 1
#define PROTO_MAX_USER_NAME 128
#define PROTO_MAX_NAME 256
#define PROTO_MAX_DEPTH 32

typedef enum proto_type {
  PROTO_UNKNOWN = 0,
  PROTO_HELLO,
  PROTO_ACK,
  PROTO_CALL,
  PROTO_PING,
  PROTO_PONG,
  PROTO_BYE,
} proto_type_t;

/* The fields of a valid hello. Strings point into the decoded frame on the
 * Lua stack and live as long as it stays there. */
typedef struct proto_hello {
  const char *user_name, *machine_name, *system_user_name, *host_type;
  const char *password;
  const char *resume_id, *resume_token; /* both NULL without resume */
  lua_Integer protocol;
} proto_hello_t;

/* Loads a private lua-cjson instance into L's registry for the functions
 * below. Returns 0 or -1. */
int proto_init(lua_State *L);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int proto_valid_utf8(const char *s, size_t len);

/*
 * Decodes one line. On success pushes the frame (a table) and returns its
 * type; an unknown or missing type is PROTO_UNKNOWN. On failure pushes
 * nothing and returns -1 with the reason in err (the caller answers
 * bad_json).
 */
int proto_decode(lua_State *L, const char *line, size_t len, char *err,
                 size_t errlen);

/*
 * Whether line is an acknowledgement spelled as herald's clients write it,
 * {"type":"ack","id":N} or {"id":N,"type":"ack"}, byte for byte, N a
 * positive decimal integer of at most 15 digits; then *id is N. The
 * commonest frame of all then costs no Lua table; any other spelling is
 * decoded by proto_decode like every frame, with the same outcome.
 */
int proto_match_ack(const char *line, size_t len, int64_t *id);

/*
 * Checks the hello frame at the top of the stack and fills h. Returns 0,
 * or -1 with a message naming the field in err (the caller answers
 * bad_hello), or -2 for an unsupported protocol version (version).
 */
int proto_check_hello(lua_State *L, proto_hello_t *h, char *err,
                      size_t errlen);

/*
 * The integer field name of the table at the top of the stack; returns 0,
 * or -1 when absent or not an integer.
 */
int proto_get_integer(lua_State *L, const char *name, lua_Integer *out);

/* Frame builders. Each returns a new outbuf (one reference) ending in '\n',
 * or NULL when memory runs out. */
outbuf_t *proto_message(lua_State *L, int64_t id, const char *text,
                        size_t len, int64_t sent_wall_ms);
/* groups: the user's groups, comma-separated ("" for none), or NULL for
 * a server without users (no "groups" field). */
outbuf_t *proto_welcome(lua_State *L, const char *session_id,
                        const char *token, double heartbeat,
                        const char *groups);
outbuf_t *proto_error(lua_State *L, const char *code, const char *message);
outbuf_t *proto_drop(lua_State *L, const char *reason);
/* The session is kept: resume after `after` seconds (and some jitter). */
outbuf_t *proto_reconnect(lua_State *L, double after, const char *reason);
/* result frames: value at the given stack index (ok), or an error: code
 * is one of PROTOCOL.md's (unknown_method, bad_args, forbidden, busy,
 * timeout, out_of_memory, failed), message the text for the user. */
outbuf_t *proto_result_value(lua_State *L, lua_Integer id, int idx,
                             char *err, size_t errlen);
outbuf_t *proto_result_error(lua_State *L, lua_Integer id, const char *code,
                             const char *message);
/* A shared constant frame: {"type":"ping"} or {"type":"pong"}. Not to be
 * unreferenced by the caller. */
outbuf_t *proto_ping(void);
outbuf_t *proto_pong(void);

/*
 * lua-cjson 2.1 decodes every number as a float: turns the whole ones
 * (up to 2^53) in the value at idx, and in the tables it holds, into
 * integers, so that a method sees 12 and not 12.0. Returns that value,
 * changed in place or replaced on the stack.
 */
void proto_integers(lua_State *L, int idx);

/* Encodes the value at idx as JSON with the private cjson; pushes the
 * text, or returns -1 with cjson's reason in err (nothing pushed). */
int proto_encode_value(lua_State *L, int idx, char *err, size_t errlen);

#endif
