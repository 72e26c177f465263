/*
 * admin: the server side of the admin socket, a Unix socket (folder 0700,
 * socket 0600) that only the server's own user or root may use (checked
 * with the peer's credentials). Over it `herald run` sends a script that
 * runs as a process, its print output streaming back, and `herald console`
 * sends lines to evaluate.
 *
 * The frames are JSON lines, like the wire protocol:
 *   client: {"type":"run","name":N,"source":S,"args":[...]}
 *           {"type":"eval","line":L}
 *           {"type":"complete","text":T}             (Tab)
 *           {"type":"interrupt"}                     (Ctrl-C)
 *   server: {"type":"print","text":T[,"error":true]}
 *           {"type":"exit","status":0|1,"error":E}   (end of a run)
 *           {"type":"done","more":B,"ok":B}          (end of an eval; more:
 *                                                    the line is not whole)
 *           {"type":"completions","items":[...]}     (answer to complete)
 */
#ifndef HERALD_ADMIN_H
#define HERALD_ADMIN_H

#include <stddef.h>

struct server;

typedef struct admin admin_t;

/* Creates the folder and the socket at path and listens. Returns NULL with
 * the reason in err (another server holds the socket, permissions...). */
admin_t *admin_start(struct server *srv, const char *path, char *err,
                     size_t errlen);
/* Stops listening, ends every admin connection and removes the socket. */
void admin_stop(admin_t *a);

#endif
