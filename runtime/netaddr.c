#include "netaddr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int netaddr_parse(const char *s, netaddr_t *out, char *err, size_t errlen) {
  const char *colon, *host = s;
  size_t hostlen;
  char *end;
  long port;

  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':') {
      snprintf(err, errlen, "\"%s\" is not [ADDRESS]:PORT", s);
      return -1;
    }
    host = s + 1;
    hostlen = (size_t)(close - host);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL) {
      snprintf(err, errlen, "\"%s\" is not HOST:PORT", s);
      return -1;
    }
    hostlen = (size_t)(colon - s);
  }
  if (hostlen >= sizeof(out->host)) {
    snprintf(err, errlen, "host name in \"%s\" is too long", s);
    return -1;
  }
  port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
    snprintf(err, errlen, "port in \"%s\" is not a number from 0 to 65535",
             s);
    return -1;
  }
  if (hostlen == 0) {
    strcpy(out->host, "127.0.0.1");
  } else {
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
  }
  out->port = (int)port;
  return 0;
}
