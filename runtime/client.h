/*
 * client: `herald client`, the remote user's side of herald: shows each
 * message from the server as an alert in the terminal, and reconnects,
 * resuming its session, when the connection is lost.
 */
#ifndef HERALD_CLIENT_H
#define HERALD_CLIENT_H

/*
 * `herald client [OPTIONS]`: argv[0] is the command name ("client"),
 * options start at argv[1]. Runs until the user interrupts it (0), the
 * server drops or refuses the session (1), or the first connection fails
 * (2; also for usage errors). Returns the process exit status.
 */
int client_main(int argc, char **argv);

#endif
