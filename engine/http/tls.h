/* The HTTPS listener's TLS context (OpenSSL through libh2o): a certificate
 * and key from PEM files or a PKCS#12 file (a JKS keystore is refused with
 * the keytool command that converts it), TLS 1.2 and 1.3 by default,
 * ciphers, client verification, session resumption, ALPN (h2 when HTTP/2
 * is on).  Built once at start; a bad file or password stops the start
 * with a message naming it. */
#ifndef CMI_HTTP_TLS_H
#define CMI_HTTP_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

enum { CMI_TLS_VERIFY_NONE = 0, CMI_TLS_VERIFY_OPTIONAL, CMI_TLS_VERIFY_REQUIRE };

typedef struct {
    const char *cert_file;    /* PEM certificate chain (leaf first), or a PKCS#12 file */
    const char *key_file;     /* PEM private key; NULL with PKCS#12 (or a PEM file holding both) */
    const char *password;     /* the PKCS#12 file's, or the encrypted PEM key's; NULL: none */
    const char *protocols;    /* "TLSv1.2,TLSv1.3" (the default when NULL) */
    const char *ciphers;      /* OpenSSL's list for TLS 1.2; NULL: OpenSSL's default */
    const char *ciphersuites; /* TLS 1.3's; NULL: OpenSSL's default */
    int verify_client;        /* CMI_TLS_VERIFY_* */
    const char *ca_file;      /* the CAs client certificates must chain to (verify_client) */
    int http2;                /* offer h2 by ALPN */
} cmi_tls_settings_t;

/* The client certificate a connection presented and the listener
 * verified (a new reference: X509_free it), or NULL: none, or not TLS. */
typedef struct st_h2o_socket_t h2o_socket_t;
X509 *cmi_tls_client_certificate(h2o_socket_t *sock);

/* "none", "optional", "require" (any case): CMI_TLS_VERIFY_*, or -1. */
int cmi_tls_verify_parse(const char *v);
/* The name of a CMI_TLS_VERIFY_* value. */
const char *cmi_tls_verify_name(int verify);

/* A server context, or NULL with a message in err. */
SSL_CTX *cmi_tls_context_create(const cmi_tls_settings_t *s, char *err, size_t errlen);

#endif
