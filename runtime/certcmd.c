#include "certcmd.h"
#include "text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static const char usage[] =
    "usage: herald cert [--out DIR] [--days N] [--force] HOST...\n"
    "\n"
    "Makes a self-signed certificate and its private key (EC P-256,\n"
    "SHA-256) for the server's TLS listener: DIR/server.crt (mode 0644)\n"
    "and DIR/server.key (mode 0600). Each HOST (a name such as\n"
    "herald.example.com or localhost, or an IP address such as 127.0.0.1)\n"
    "goes into the certificate's subjectAltName; the first is also its\n"
    "common name. The certificate is its own authority: clients trust it\n"
    "with --ca DIR/server.crt.\n"
    "\n"
    "  --out DIR    where to write the two files (default: the current\n"
    "               folder; made, mode 0700, when missing)\n"
    "  --days N     how long the certificate is valid, 1 to 36500 days\n"
    "               (default 365)\n"
    "  --force      replace existing files (otherwise refused)\n"
    "  --help       show this help\n"
    "\n"
    "Prints the two paths and the certificate's SHA-256 fingerprint.\n"
    "\n"
    "Exit status: 0 success, 1 failure (a file exists, cannot write),\n"
    "2 usage error.\n";

#define MAX_DAYS 36500

static int usage_error(const char *fmt, const char *arg) {
  fputs("herald: cert: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\nTry 'herald cert --help'.\n", stderr);
  return 2;
}

/* "why" and OpenSSL's first queued error, when there is one. */
static int fail(const char *why) {
  unsigned long e = ERR_get_error();
  char detail[256];
  if (e != 0) {
    ERR_error_string_n(e, detail, sizeof(detail));
    fprintf(stderr, "herald: cert: %s: %s\n", why, detail);
  } else {
    fprintf(stderr, "herald: cert: %s\n", why);
  }
  ERR_clear_error();
  return 1;
}

/* 1 when host is an IPv4 or IPv6 address. */
static int is_ip(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 ||
         inet_pton(AF_INET6, host, buf) == 1;
}

/* 1 when host is a DNS name a certificate can hold: dot-separated labels
 * of 1 to 63 letters, digits and '-' (not at either end), at most 253 in
 * all, the first label possibly a '*' wildcard. */
static int is_dns_name(const char *host) {
  size_t total = strlen(host), label = 0;
  if (total == 0 || total > 253)
    return 0;
  if (TEXT_STARTS_WITH(host, "*."))
    host += 2;
  for (const char *p = host;; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '.' || c == '\0') {
      if (label == 0 || p[-1] == '-')
        return 0;
      if (c == '\0')
        return 1;
      label = 0;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || (c == '-' && label > 0)))
      return 0;
    if (++label > 63)
      return 0;
  }
}

/* The subjectAltName: IP:... for addresses, DNS:... for names. Built as
 * GENERAL_NAMEs, not as an OpenSSL configuration string, so no HOST can
 * smuggle another entry in. */
static int add_alt_names(X509 *x, char **hosts, int n) {
  GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
  int ok = names != NULL;

  for (int i = 0; ok && i < n; i++) {
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_OCTET_STRING *ip = is_ip(hosts[i]) ? a2i_IPADDRESS(hosts[i]) : NULL;
    ok = g != NULL;
    if (ok && ip != NULL) {
      GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
    } else if (ok) {
      ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
      ok = dns != NULL && ASN1_STRING_set(dns, hosts[i], -1) == 1;
      if (ok)
        GENERAL_NAME_set0_value(g, GEN_DNS, dns);
      else
        ASN1_IA5STRING_free(dns);
    }
    if (ok && sk_GENERAL_NAME_push(names, g) > 0)
      continue;
    GENERAL_NAME_free(g);
    ok = 0;
  }
  ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0,
                               X509V3_ADD_DEFAULT) == 1;
  GENERAL_NAMES_free(names);
  return ok ? 0 : -1;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
  int ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

/* The certificate of key for hosts, valid days from now; NULL on failure
 * (OpenSSL's error queue says why). */
static X509 *make_cert(EVP_PKEY *key, char **hosts, int n, long days) {
  X509 *x = X509_new();
  X509_NAME *name;
  BIGNUM *serial = BN_new();
  X509V3_CTX ctx;
  int ok;

  /* A random positive serial of 159 bits (RFC 5280: at most 20 bytes),
   * so two certificates made for the same host never share one. */
  ok = x != NULL && serial != NULL &&
       X509_set_version(x, X509_VERSION_3) == 1 &&
       BN_rand(serial, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
       BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL &&
       X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
       X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) != NULL &&
       X509_set_pubkey(x, key) == 1;
  BN_free(serial);
  if (ok) {
    name = X509_get_subject_name(x);
    ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)hosts[0], -1, -1,
                                    0) == 1 &&
         X509_set_issuer_name(x, name) == 1;
  }
  if (ok) {
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    /* CA:TRUE so that the certificate is its own trust anchor (--ca);
     * serverAuth so that clients accept it for a server. */
    ok = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
         add_ext(x, &ctx, NID_key_usage,
                 "critical,digitalSignature,keyCertSign") == 0 &&
         add_ext(x, &ctx, NID_ext_key_usage, "serverAuth") == 0 &&
         add_ext(x, &ctx, NID_subject_key_identifier, "hash") == 0 &&
         add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") ==
             0 &&
         add_alt_names(x, hosts, n) == 0 &&
         X509_sign(x, key, EVP_sha256()) > 0;
  }
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

/* Makes dir and its missing parents, mode 0700 (the key goes there). */
static int make_dirs(const char *dir) {
  char path[4096];
  size_t len = strlen(dir);
  if (len == 0 || len >= sizeof(path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(path, dir, len + 1);
  for (char *p = path + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
      *p = c;
      if (c == '\0')
        break;
    }
  }
  return 0;
}

/*
 * Writes what emit puts in a BIO to a new temporary file beside path, whose
 * name goes to tmp (mkstemp: mode 0600 from its creation, so the key is
 * never readable by others), with mode at the end. Returns 0, or 1 after
 * saying why.
 */
static int stage(const char *path, char *tmp, size_t tmplen, mode_t mode,
                 int (*emit)(BIO *, void *), void *what) {
  BIO *bio;
  int fd, ok;

  snprintf(tmp, tmplen, "%s.XXXXXX", path);
  fd = mkstemp(tmp);
  if (fd < 0) {
    fprintf(stderr, "herald: cert: cannot create %s: %s\n", tmp,
            strerror(errno));
    return 1;
  }
  bio = BIO_new_fd(fd, BIO_NOCLOSE);
  ok = bio != NULL && emit(bio, what) == 1 && BIO_flush(bio) == 1;
  BIO_free(bio);
  if (!ok) {
    close(fd);
    unlink(tmp);
    return fail("cannot write the PEM");
  }
  ok = fchmod(fd, mode) == 0 && fsync(fd) == 0;
  if (close(fd) != 0 || !ok) {
    fprintf(stderr, "herald: cert: cannot write %s: %s\n", tmp,
            strerror(errno));
    unlink(tmp);
    return 1;
  }
  return 0;
}

/* Gives tmp the name path: over an existing file when force, else with
 * link(), which fails if path exists, even one made since the check.
 * Returns 0, or 1 after saying why; tmp is gone either way. */
static int commit(const char *tmp, const char *path, int force) {
  int ok = force ? rename(tmp, path) == 0 : link(tmp, path) == 0;
  int e = errno;
  unlink(tmp);
  if (ok)
    return 0;
  if (e == EEXIST)
    fprintf(stderr, "herald: cert: %s already exists; give --force to "
            "replace it\n", path);
  else
    fprintf(stderr, "herald: cert: cannot write %s: %s\n", path,
            strerror(e));
  return 1;
}

static int emit_cert(BIO *bio, void *x) { return PEM_write_bio_X509(bio, x); }

static int emit_key(BIO *bio, void *key) {
  return PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
}

int certcmd_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"out", required_argument, NULL, 'o'},
      {"days", required_argument, NULL, 'd'},
      {"force", no_argument, NULL, 'f'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *dir = ".";
  char crt_path[4096], key_path[4096], crt_tmp[4200], key_tmp[4200], *end;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  long days = 365;
  int ch, force = 0, r;
  struct stat st;
  EVP_PKEY *key;
  X509 *x;

  opterr = 0;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (ch) {
    case 'o': dir = optarg; break;
    case 'd':
      errno = 0;
      days = strtol(optarg, &end, 10);
      if (errno != 0 || end == optarg || *end != '\0' || days < 1 ||
          days > MAX_DAYS)
        return usage_error("--days must be a whole number from 1 to 36500, "
                           "not '%s'", optarg);
      break;
    case 'f': force = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    default:
      return usage_error("unknown or incomplete option '%s'",
                         argv[optind - 1]);
    }
  }
  if (optind >= argc)
    return usage_error("%s", "no HOST given (a name such as localhost, or "
                       "an IP address)");
  for (int i = optind; i < argc; i++)
    if (!is_ip(argv[i]) && !is_dns_name(argv[i]))
      return usage_error("'%s' is neither a host name nor an IP address",
                         argv[i]);
  /* The common name is limited to 64 characters (RFC 5280). */
  if (strlen(argv[optind]) > 64)
    return usage_error("the first HOST, '%s', is the certificate's common "
                       "name: at most 64 characters", argv[optind]);
  if (dir[0] == '\0')
    dir = ".";
  if ((size_t)snprintf(crt_path, sizeof(crt_path), "%s/server.crt", dir) >=
          sizeof(crt_path) ||
      (size_t)snprintf(key_path, sizeof(key_path), "%s/server.key", dir) >=
          sizeof(key_path))
    return usage_error("--out: '%s' is too long", dir);
  /* Refused before anything is made; commit() checks again. */
  if (!force) {
    const char *paths[] = {crt_path, key_path};
    for (int i = 0; i < 2; i++)
      if (lstat(paths[i], &st) == 0) {
        fprintf(stderr, "herald: cert: %s already exists; give --force to "
                "replace it\n", paths[i]);
        return 1;
      }
  }
  if (stat(dir, &st) != 0 && make_dirs(dir) != 0) {
    fprintf(stderr, "herald: cert: cannot make the folder %s: %s\n", dir,
            strerror(errno));
    return 1;
  }
  key = EVP_EC_gen("P-256");
  if (key == NULL)
    return fail("cannot make an EC P-256 key");
  x = make_cert(key, argv + optind, argc - optind, days);
  if (x == NULL) {
    EVP_PKEY_free(key);
    return fail("cannot make the certificate");
  }
  /* Both files are written in full before either takes its name, so a
   * failure leaves no half pair (nor a replaced key without its
   * certificate). */
  r = stage(key_path, key_tmp, sizeof(key_tmp), 0600, emit_key, key);
  if (r == 0) {
    r = stage(crt_path, crt_tmp, sizeof(crt_tmp), 0644, emit_cert, x);
    if (r != 0)
      unlink(key_tmp);
  }
  if (r == 0) {
    r = commit(key_tmp, key_path, force);
    if (r != 0)
      unlink(crt_tmp);
    else if ((r = commit(crt_tmp, crt_path, force)) != 0 && !force)
      unlink(key_path); /* the one just made, not someone else's */
  }
  if (r == 0 && X509_digest(x, EVP_sha256(), md, &mdlen) != 1)
    r = fail("cannot compute the fingerprint");
  if (r == 0) {
    printf("certificate: %s\nkey: %s\nSHA-256 fingerprint: ", crt_path,
           key_path);
    for (unsigned i = 0; i < mdlen; i++)
      printf("%s%02X", i ? ":" : "", md[i]);
    putchar('\n');
  }
  X509_free(x);
  EVP_PKEY_free(key);
  return r;
}
