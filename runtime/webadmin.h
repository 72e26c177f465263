/*
 * webadmin: the administrators' channel of the browser page (/admin/ws,
 * docs/protocol.md "Administration over WebSocket"). A user of group
 * admin logs in with the users file's password; the server then pushes
 * the sessions (rows that changed and IDs that left, at most twice a
 * second: one walk over the sessions per tick, however many
 * administrators watch), the processes and its status; the page's requests
 * run as processes named admin:<userName> (modules/webadmin.lua), under
 * the same natives as the console, and are audited under that name.
 */
#ifndef HERALD_WEBADMIN_H
#define HERALD_WEBADMIN_H

#include "server.h"

struct conn;
typedef struct webadmin webadmin_t;

/* NULL when memory runs out. */
webadmin_t *webadmin_new(server_t *srv);
/* Takes a connection upgraded on /admin/ws. */
void webadmin_adopt(webadmin_t *wa, struct conn *c);
/* Closes every administrator's connection and stops the pushes. */
void webadmin_stop(webadmin_t *wa);
/* After the loop has run out. NULL is fine. */
void webadmin_free(webadmin_t *wa);

#endif
