/*
 * prompt: the console inside `herald serve`, when stdin is a terminal. The
 * libuv loop watches stdin, so the server keeps serving while the prompt
 * waits; the server's log lines print above the line being typed; Ctrl-C
 * interrupts a running line; Ctrl-D or \q stops the server (while
 * sessions are connected, only the second in a row: the first says so).
 */
#ifndef HERALD_PROMPT_H
#define HERALD_PROMPT_H

struct server;

/* Starts the prompt on the terminal; returns 0 or -1. */
int prompt_start(struct server *srv);
/* Ends it and restores the terminal. Idempotent. */
void prompt_stop(void);

#endif
