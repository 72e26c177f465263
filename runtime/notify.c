#include "notify.h"

#include <stdint.h>
#include <systemd/sd-daemon.h>

#include "log.h"

static uv_timer_t watchdog_timer;
static int watchdog_on;

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

void notify_ready(uv_loop_t *loop) {
  uint64_t usec = 0;
  sd_notify(0, "READY=1\nSTATUS=serving");
  if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
    uint64_t every_ms = usec / 2000; /* half the interval */
    uv_timer_init(loop, &watchdog_timer);
    uv_timer_start(&watchdog_timer, on_watchdog, every_ms, every_ms);
    uv_unref((uv_handle_t *)&watchdog_timer); /* never keeps the loop up */
    watchdog_on = 1;
    log_info("systemd watchdog: a ping every %llu ms",
             (unsigned long long)every_ms);
  }
}

void notify_stopping(void) {
  sd_notify(0, "STOPPING=1");
  if (watchdog_on) {
    uv_close((uv_handle_t *)&watchdog_timer, NULL);
    watchdog_on = 0;
  }
}
