/*
 * sockpath: whether the client side may trust an admin socket before it
 * sends a script or a console line through it. `herald run` and `herald
 * console` send whatever the user gives them and print whatever comes
 * back, so a fake server listening where they look (another local user got
 * to /tmp/herald-$UID/ first, as under cron with no XDG_RUNTIME_DIR) would
 * read the user's scripts and answer in the server's name. The rules are
 * ssh's and tmux's: the user trusts only what the user or root controls.
 */
#ifndef HERALD_SOCKPATH_H
#define HERALD_SOCKPATH_H

#include <stddef.h>

/*
 * Checks the socket at path and its folder before connecting:
 *   - the folder (lstat; a link must be the user's or root's, and its
 *     target is checked in its place) is owned by the user or root;
 *   - the folder is not writable by group or others, unless it has the
 *     sticky bit and the socket is the user's or root's (as /tmp: nobody
 *     else may then remove the socket and put another in its place);
 *   - the socket is owned by the user or root.
 * A folder owned by someone else, or writable by others without the
 * sticky bit, is refused even with no socket in it yet: whoever controls it
 * may put one there at any time. Otherwise a socket or folder that does
 * not exist passes, and connecting fails with "cannot reach the server" as
 * before.
 * Returns 0, or -1 with "refusing the admin socket PATH: why; what to do"
 * in err.
 */
int sockpath_check(const char *path, char *err, size_t errlen);

/*
 * Checks the process listening on the other end of fd, connected to path:
 * it must run as the user or root. This closes the window between
 * sockpath_check and connect (a socket that did not exist yet when it was
 * checked). Returns 0, or -1 with the reason in err, as sockpath_check.
 */
int sockpath_check_peer(int fd, const char *path, char *err, size_t errlen);

#endif
