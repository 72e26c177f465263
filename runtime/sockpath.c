#include "sockpath.h"

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The user's own files and root's; root can take over anything anyway. */
static int trusted(uid_t uid) { return uid == getuid() || uid == 0; }

/* Writes "refusing the admin socket PATH: WHY; what to do" and returns -1. */
static int refuse(char *err, size_t errlen, const char *path,
                  const char *why, ...) __attribute__((format(printf, 4, 5)));
static int refuse(char *err, size_t errlen, const char *path,
                  const char *why, ...) {
  char reason[1024];
  va_list ap;

  va_start(ap, why);
  vsnprintf(reason, sizeof(reason), why, ap);
  va_end(ap);
  snprintf(err, errlen, "refusing the admin socket %s: %s; remove it, or "
           "give --socket a path in a folder of your own", path, reason);
  return -1;
}

/*
 * The file at path as lstat sees it, or, for a link that is the user's or
 * root's, the file it leads to (a link's own mode means nothing; only its
 * owner could have made it point elsewhere). Returns 1 with *st filled,
 * 0 when there is nothing to check (connecting will say why), -1 when the
 * link is someone else's (*st then holds the link).
 */
static int look(const char *path, struct stat *st) {
  if (lstat(path, st) != 0)
    return 0;
  if (!S_ISLNK(st->st_mode))
    return 1;
  if (!trusted(st->st_uid))
    return -1;
  return stat(path, st) == 0 ? 1 : 0;
}

int sockpath_check(const char *path, char *err, size_t errlen) {
  char copy[4096];
  const char *dir;
  struct stat st;
  unsigned me = (unsigned)getuid();
  int r;

  /* Longer than any Unix socket path: connecting fails with its reason. */
  if ((size_t)snprintf(copy, sizeof(copy), "%s", path) >= sizeof(copy))
    return 0;
  dir = dirname(copy);

  /* The folder: whoever owns it, or may write in it, decides which socket
   * is found at path, existing or not yet. */
  r = look(dir, &st);
  if (r < 0)
    return refuse(err, errlen, path, "its folder %s is a link owned by uid "
                  "%u, not you (%u)", dir, (unsigned)st.st_uid, me);
  if (r == 0 || !S_ISDIR(st.st_mode))
    return 0;
  if (!trusted(st.st_uid))
    return refuse(err, errlen, path, "its folder %s is owned by uid %u, not "
                  "you (%u)", dir, (unsigned)st.st_uid, me);
  /* With the sticky bit (/tmp), others may add files but not remove or
   * rename the user's: a socket the user or root owns stays theirs, which
   * the check of the socket below makes sure of. */
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(st.st_mode & S_ISVTX))
    return refuse(err, errlen, path, "its folder %s is writable by others "
                  "(mode %04o)", dir, (unsigned)(st.st_mode & 07777));

  /* The socket file belongs to whoever bound it: to the user or root when
   * the server is theirs. */
  r = look(path, &st);
  if (r < 0)
    return refuse(err, errlen, path, "it is a link owned by uid %u, not you "
                  "(%u)", (unsigned)st.st_uid, me);
  if (r > 0 && !trusted(st.st_uid))
    return refuse(err, errlen, path, "it is owned by uid %u, not you (%u)",
                  (unsigned)st.st_uid, me);
  return 0;
}

int sockpath_check_peer(int fd, const char *path, char *err, size_t errlen) {
  struct ucred cred;
  socklen_t len = sizeof(cred);

  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return refuse(err, errlen, path, "cannot tell who listens on it (%s)",
                  strerror(errno));
  if (!trusted(cred.uid))
    return refuse(err, errlen, path, "the server on it runs as uid %u, not "
                  "you (%u)", (unsigned)cred.uid, (unsigned)getuid());
  return 0;
}
