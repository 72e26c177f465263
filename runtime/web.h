/*
 * web: the browser pages and their static files, embedded in the binary
 * at build time from web/ (tools/embed.c), so that a server serves them
 * with no file beside it.
 */
#ifndef HERALD_WEB_H
#define HERALD_WEB_H

#include <stddef.h>

typedef struct web_asset {
  const char *name; /* the file's name in web/: "index.html", "user.js" */
  const char *data;
  size_t len;
} web_asset_t;

/* Every file of web/, ended by a NULL name. */
extern const web_asset_t web_assets[];

/* The file called name, or NULL. */
const web_asset_t *web_find(const char *name);
/* Its Content-Type, from the name's extension. */
const char *web_content_type(const char *name);

#endif
