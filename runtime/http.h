/*
 * http: the browser side of the server, on http_listen. HTTP/1.1 requests
 * (parsed by http-parser) get the embedded pages and files; GET /ws and
 * GET /admin/ws upgrade to WebSocket and hand the connection over: /ws to
 * the server as a remote user's connection, /admin/ws to the
 * administrators' channel. Every answer closes its connection, and the
 * request must come whole within handshake_timeout.
 */
#ifndef HERALD_HTTP_H
#define HERALD_HTTP_H

#include <stddef.h>

#include "server.h"
#include "webadmin.h"

typedef struct http http_t;

/* Listens on the configuration's http_listen (TLS when the server has it).
 * NULL with the reason in err. */
http_t *http_start(server_t *srv, webadmin_t *admin, char *err,
                   size_t errlen);
/* Says where the pages are, once everything has started. */
void http_announce(const http_t *h);
/* Stops listening and closes the requests in progress. NULL is fine. */
void http_stop(http_t *h);

#endif
