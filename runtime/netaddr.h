/*
 * netaddr: "HOST:PORT" strings of the command line and the configuration.
 */
#ifndef HERALD_NETADDR_H
#define HERALD_NETADDR_H

#include <stddef.h>

#define NETADDR_HOST_MAX 256

typedef struct netaddr {
  char host[NETADDR_HOST_MAX];
  int port;
} netaddr_t;

/*
 * Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (host defaults to 127.0.0.1)
 * into *out. The port must be 0..65535 (0 asks the kernel for a free one).
 * Returns 0, or -1 with the reason in err.
 */
int netaddr_parse(const char *s, netaddr_t *out, char *err, size_t errlen);

#endif
