/*
 * certcmd: `herald cert`, which makes a self-signed certificate and its
 * key for the server's TLS listener (tls = { cert = ..., key = ... }); the
 * certificate is also the trust anchor clients give to --ca.
 */
#ifndef HERALD_CERTCMD_H
#define HERALD_CERTCMD_H

int certcmd_main(int argc, char **argv);

#endif
