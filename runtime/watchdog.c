#include "watchdog.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "process.h"

/* How often the thread looks, when it speaks of a stuck loop, and how long
 * after SIGTERM it lets the server finish on its own. */
#define WATCH_INTERVAL_MS 100
#define STUCK_NS (2 * 1000000000LL)
#define STOP_GRACE_NS (4000 * 1000000LL)

static struct {
  uv_async_t wake;
  watchdog_signal_fn fn;
  void *data;
  uv_thread_t thread;
  int started, wake_open;
  /* Written by the signal handler, read by the loop and the thread. */
  volatile sig_atomic_t pending_int, pending_term, sigint_interrupts;
  volatile sig_atomic_t quit; /* the thread is to end */
  int64_t stop_asked_ns;      /* atomic: when SIGTERM (or SIGINT) came */
} wd;

/* The thread's own log line: log_msg may hand lines to the console's
 * writer, which is the loop's alone. */
static void say(const char *what, double seconds) {
  char line[256];
  size_t n = clock_format_iso8601(clock_wall_ms(), line, sizeof(line));
  n += (size_t)snprintf(line + n, sizeof(line) - n, " %s: ", "warn");
  snprintf(line + n, sizeof(line) - n, what, seconds);
  n = strlen(line);
  line[n++] = '\n';
  if (write(STDERR_FILENO, line, n) < 0) {
    /* nowhere left to say it */
  }
}

static void on_signal(int signum) {
  int stops = signum == SIGTERM || !wd.sigint_interrupts;
  if (signum == SIGTERM)
    wd.pending_term = 1;
  else
    wd.pending_int = 1;
  if (stops) {
    int64_t none = 0;
    /* clock_gettime is async-signal-safe. */
    __atomic_compare_exchange_n(&wd.stop_asked_ns, &none, clock_mono_ns(),
                                0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    process_request_stop();
  }
  if (wd.wake_open)
    uv_async_send(&wd.wake); /* async-signal-safe */
}

static void on_wake(uv_async_t *h) {
  (void)h;
  if (wd.pending_int) {
    wd.pending_int = 0;
    wd.fn(SIGINT, wd.data);
  }
  if (wd.pending_term) {
    wd.pending_term = 0;
    wd.fn(SIGTERM, wd.data);
  }
}

static void watch(void *arg) {
  sigset_t set;
  int told = 0;
  (void)arg;
  /* Signals are for the loop's thread. */
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  while (!wd.quit) {
    int64_t now = clock_mono_ns();
    int64_t busy = process_busy_since();
    int64_t stop = __atomic_load_n(&wd.stop_asked_ns, __ATOMIC_RELAXED);
    if (busy != 0 && now - busy > STUCK_NS) {
      if (!told)
        say("the server has been held by lua code for %.1f s: one call "
            "into C that no limit can interrupt (a pathological pattern "
            "match?)", (double)(now - busy) / 1e9);
      told = 1;
    } else {
      told = 0;
    }
    if (stop != 0 && now - stop > STOP_GRACE_NS) {
      say("still running %.1f s after the signal to stop: exiting now, "
          "without telling the clients", (double)(now - stop) / 1e9);
      _exit(1);
    }
    uv_sleep(WATCH_INTERVAL_MS);
  }
}

int watchdog_start(uv_loop_t *loop, watchdog_signal_fn fn, void *data) {
  struct sigaction sa;
  int r;
  wd.fn = fn;
  wd.data = data;
  r = uv_async_init(loop, &wd.wake, on_wake);
  if (r != 0)
    return r;
  uv_unref((uv_handle_t *)&wd.wake);
  wd.wake_open = 1;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  wd.quit = 0;
  r = uv_thread_create(&wd.thread, watch, NULL);
  wd.started = r == 0;
  return r;
}

void watchdog_sigint_interrupts(int flag) { wd.sigint_interrupts = flag; }

void watchdog_close(void) {
  if (!wd.wake_open)
    return;
  wd.wake_open = 0;
  uv_close((uv_handle_t *)&wd.wake, NULL);
}

void watchdog_stop(void) {
  struct sigaction sa;
  if (!wd.started)
    return;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  wd.quit = 1;
  uv_thread_join(&wd.thread);
  wd.started = 0;
}
