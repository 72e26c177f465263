#include "console.h"

#include <editline/readline.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HISTORY_LINES 1000

static struct {
  console_backend_t be;
  char prompt[64], more_prompt[64];
  char history[4096];
  int open;
  int busy;      /* a line is running: no prompt shown */
  int installed; /* libedit's handler is installed */
  int more;      /* the last line left its statement unfinished */
} con;

/*
 * Where libedit cuts the word Tab completes (its readline emulation reads
 * rl_basic_word_break_characters, not the completer's): at spaces,
 * operators, separators and opening brackets. Not at '.', ':' or '_' (a
 * name path is one word), nor at a closing bracket, a quote or a
 * backslash: those stay in the word, so the back end sees that what comes
 * before the name path is not a name, and offers nothing.
 */
static const char word_breaks[] = " \t\n@$><=;|&{([+-*/%^~#,!?`";

static void on_line(char *line);

static void install(const char *prompt) {
  rl_callback_handler_install(prompt, on_line);
  con.installed = 1;
  con.be.want_input(con.be.ctx, 1);
}

static void uninstall(void) {
  if (con.installed) {
    rl_callback_handler_remove();
    con.installed = 0;
  }
}

/* Ctrl-D or \q: the back end may keep the console open (it said why). */
static void quit(void) {
  if (!con.be.quit(con.be.ctx) && con.open)
    install(con.more ? con.more_prompt : con.prompt);
}

static void on_line(char *line) {
  /* Called from inside libedit: leave it before evaluating. */
  uninstall();
  if (line == NULL) { /* Ctrl-D */
    fputc('\n', stdout);
    fflush(stdout);
    quit();
    return;
  }
  if (line[0] != '\0') {
    add_history(line);
    if (con.history[0] != '\0')
      write_history(con.history);
  }
  if (strcmp(line, "\\q") == 0) {
    free(line);
    quit();
    return;
  }
  con.busy = 1;
  con.be.want_input(con.be.ctx, 0);
  con.be.eval(con.be.ctx, line);
  free(line);
}

/* Longest common prefix of the matches: what Tab inserts. */
static char *common_prefix(char **items) {
  size_t n = strlen(items[0]);
  for (size_t i = 1; items[i] != NULL; i++) {
    size_t k = 0;
    while (k < n && items[i][k] == items[0][k])
      k++;
    n = k;
  }
  return strndup(items[0], n);
}

/*
 * libedit deletes the word and inserts the matches' common prefix: a match
 * that did not start with the word would take typed text away. Only the
 * back end's items that extend text are kept.
 */
static char **complete(const char *text, int start, int end) {
  char **items, **out;
  size_t n = 0, len = strlen(text);
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1; /* never file names */
  if (con.be.complete == NULL ||
      (items = con.be.complete(con.be.ctx, text)) == NULL)
    return NULL;
  for (size_t i = 0; items[i] != NULL; i++) {
    if (strncmp(items[i], text, len) == 0)
      items[n++] = items[i];
    else
      free(items[i]);
  }
  items[n] = NULL;
  if (n == 0) {
    free(items);
    return NULL;
  }
  /* readline's form: the text to insert, then the matches. */
  out = calloc(n + 2, sizeof(*out));
  if (out == NULL) {
    for (size_t i = 0; i < n; i++)
      free(items[i]);
    free(items);
    return NULL;
  }
  out[0] = common_prefix(items);
  memcpy(out + 1, items, n * sizeof(*items));
  free(items);
  if (n == 1) { /* a single match replaces the text by itself */
    free(out[1]);
    out[1] = NULL;
  }
  return out;
}

static char *no_entries(const char *text, int state) {
  (void)text;
  (void)state;
  return NULL;
}

int console_open(const console_backend_t *be, const char *name) {
  const char *home = getenv("HOME");
  con.be = *be;
  snprintf(con.prompt, sizeof(con.prompt), "%s> ", name);
  snprintf(con.more_prompt, sizeof(con.more_prompt), "%*s>> ",
           (int)strlen(name) - 1, "");
  if (home != NULL && home[0] != '\0')
    snprintf(con.history, sizeof(con.history), "%s/.herald_history", home);
  rl_readline_name = "herald";
  rl_catch_signals = 0;
  rl_initialize();
  using_history();
  stifle_history(HISTORY_LINES);
  if (con.history[0] != '\0')
    read_history(con.history);
  rl_attempted_completion_function = complete;
  rl_completion_entry_function = no_entries;
  rl_basic_word_break_characters = word_breaks;
  rl_completer_word_break_characters = (char *)word_breaks;
  rl_completion_append_character = '\0';
  /* Ctrl-R finds the previous history line that matches what is typed.
   * libedit's incremental search would read its keys by itself, blocking:
   * that would freeze the server's loop, and in callback mode its last
   * key is lost. */
  rl_parse_and_bind("bind ^R ed-search-prev-history");
  rl_parse_and_bind("bind ^S ed-search-next-history");
  con.open = 1;
  con.busy = 0;
  con.more = 0;
  printf("Lua console of herald. \\help lists the functions, \\q or "
         "Ctrl-D leaves.\n");
  fflush(stdout);
  install(con.prompt);
  return 0;
}

void console_input_ready(void) {
  if (con.installed)
    rl_callback_read_char();
}

void console_output(const char *text, size_t len) {
  if (con.installed) {
    /* Clear the prompt's row, write above it, and let libedit redraw the
     * prompt with what was being typed (its buffer is left untouched). */
    fputs("\r\033[K", stdout);
  }
  fwrite(text, 1, len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  if (con.installed)
    rl_forced_update_display();
}

void console_done(int more) {
  con.busy = 0;
  con.more = more;
  if (con.open)
    install(more ? con.more_prompt : con.prompt);
}

void console_interrupt(void) {
  if (!con.open)
    return;
  if (con.busy) {
    con.be.interrupt(con.be.ctx);
    return;
  }
  /* At the prompt: abandon what was typed, start a fresh line. */
  rl_replace_line("", 0);
  uninstall();
  fputs("^C\n", stdout);
  fflush(stdout);
  con.more = 0; /* the unfinished statement is forgotten too */
  con.be.interrupt(con.be.ctx);
  install(con.prompt);
}

void console_close(void) {
  if (!con.open)
    return;
  uninstall();
  con.open = 0;
  if (con.history[0] != '\0')
    write_history(con.history);
}
