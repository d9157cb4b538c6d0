/* TLS to the broker (docs/rabbitmq.md, "TLS and authentication"): one
 * proton SSL domain per connection config, made from MI's parameters. */
#ifndef RMQ_TLS_H
#define RMQ_TLS_H

#include <proton/transport.h>

#include "rmq.h"

typedef struct rmq_tls rmq_tls_t;

/* Whether cmi speaks the sslVersion v (param names it in err): TLSv1.2
 * (1.2 and 1.3 offered), TLSv1.3, or TLS (as TLSv1.2). */
int rmq_tls_check_version(const char *param, const char *v, char *err, size_t n);

/* The domain of p (sslEnabled), its key and trust stores read and checked
 * now; the start-up warnings for what p gives up.  NULL with the reason in
 * err. */
rmq_tls_t *rmq_tls_create(const cmi_host_t *host, const char *component, const rmq_init_params_t *p, char *err,
                          size_t n);
void rmq_tls_destroy(rmq_tls_t *tls);

/* TLS on t, a connection to host (the name the certificate must carry).
 * Pool thread.  0, or -1 (proton could not set it up). */
int rmq_tls_attach(rmq_tls_t *tls, pn_transport_t *t, const char *host);

/* What a diagnosis (rmq_tls_diagnose) checks the broker's certificate
 * against: the trust store's file (NULL: the system's CAs), the checks. */
typedef struct {
    const char *ca_file;
    int verify_peer;
    int verify_host;
    long min_version; /* CURL_SSLVERSION_* */
} rmq_tls_files_t;

void rmq_tls_files(const rmq_tls_t *tls, rmq_tls_files_t *out);

/* Why a TLS handshake with host:port fails, in OpenSSL's words, found by
 * a handshake of libcurl's own with the same settings (proton says only
 * "certificate verify failed"): "certificate has expired", "unable to get
 * local issuer certificate", "no alternative certificate subject name
 * matches target host name ...".  Blocking, at most timeout_ms; run off
 * the pool's thread.  Writes "" when the handshake succeeds. */
void rmq_tls_diagnose(const rmq_tls_files_t *f, const char *host, const char *port, long timeout_ms, char *why,
                      size_t n);

#endif
