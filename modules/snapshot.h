/*
 * snapshot: the sessions collection of get_process_activity(), built when
 * Lua first looks at it.
 *
 * Ten thousand session objects as Lua tables cost more than anything else
 * the server does, and the common use of a listing is to return it to a
 * caller as JSON. So get_process_activity() copies the sessions' fields
 * into one userdata (one allocation) and returns a table that is a
 * collection in waiting: the first index, length, pairs or assignment
 * builds its elements from the copy (snapshot_settle) and gives it the
 * ordinary collection metatable, and from then on it is an ordinary
 * collection. A reply that returns such a table untouched is written from
 * the copy straight into the frame (snapshot_json_size/_write).
 *
 * Whatever reads tables raw (next, rawget, rawlen, rawset, cjson.encode,
 * proto_encode_value, the console's printer) settles them first, with
 * snapshot_settle or snapshot_settle_within.
 */
#ifndef HERALD_SNAPSHOT_H
#define HERALD_SNAPSHOT_H

#include <lua.h>
#include <stddef.h>

struct server;
struct session;

/* Pushes the session object of API.md for s (built now, not lazily). */
void snapshot_push_object(lua_State *L, struct server *srv,
                          const struct session *s);

/* Pushes the collection of srv's sessions (those not ending), unbuilt. */
void snapshot_push_sessions(lua_State *L, struct server *srv);

/* Whether the value at idx is a snapshot not built yet. */
int snapshot_unsettled(lua_State *L, int idx);

/* Builds the value at idx if it is an unsettled snapshot; returns 1 when
 * it did. Raises a Lua error when memory runs out. */
int snapshot_settle(lua_State *L, int idx);

/* Settles every unsettled snapshot in the value at idx (tables are walked,
 * to depth levels, each once). Nothing to do, and no walk, when no
 * snapshot is waiting anywhere. Raises a Lua error when memory runs out. */
void snapshot_settle_within(lua_State *L, int idx, int depth);

/* The JSON text of the unsettled snapshot at idx: its length, then the
 * text itself written to out (which holds snapshot_json_size bytes). It is
 * what cjson would write for the built collection, keys in another order;
 * always valid UTF-8 (bytes that are not become U+FFFD). */
size_t snapshot_json_size(lua_State *L, int idx);
void snapshot_json_write(lua_State *L, int idx, char *out);

/* Makes snapshots possible in L (vm_new calls it): the metatable, and
 * require("snapshot").settle(...) for trusted Lua modules (the console's
 * printer), which settles each argument and what it holds. */
void snapshot_open(lua_State *L);

#endif
