/*
 * notify: herald serve under systemd (contrib/herald.service, Type=notify):
 * READY=1 once everything listens, STOPPING=1 at shutdown, and, with
 * WatchdogSec, WATCHDOG=1 from a timer on the loop at half the interval,
 * so that a loop held by something (it should never be: see process.c and
 * watchdog.c) gets the service restarted. sd_notify from libsystemd does
 * the talking; without NOTIFY_SOCKET (not run by systemd) nothing is sent.
 */
#ifndef HERALD_NOTIFY_H
#define HERALD_NOTIFY_H

#include <uv.h>

/* Says the server is ready, and starts the watchdog's pings when systemd
 * asked for them. */
void notify_ready(uv_loop_t *loop);
/* Says the server is stopping, and stops the pings. */
void notify_stopping(void);

#endif
