#include "config.h"

#include "http/client_cert.h"

#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/regex.h"
#include "http/answer.h"
#include "http/tls.h"
#include "runtime/worker.h"

/* What a connection's verified certificate shows, written once per
 * connection (a connection keeps its certificate: renegotiation is off)
 * and kept with it: three NUL-terminated texts in one block. */
typedef struct {
    const char *pem, *subject, *issuer;
    char text[];
} peer_t;

/* Appends an X.509 name as RFC 2253 writes it ("O=Example,CN=orders"),
 * then a NUL. */
static int put_name(BIO *b, const X509_NAME *name)
{
    return X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0 && BIO_write(b, "", 1) == 1;
}

static peer_t *describe(X509 *cert)
{
    BIO *b = BIO_new(BIO_s_mem());
    peer_t *p = NULL;
    if (b != NULL && PEM_write_bio_X509(b, cert) == 1 && BIO_write(b, "", 1) == 1 &&
        put_name(b, X509_get_subject_name(cert)) && put_name(b, X509_get_issuer_name(cert))) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        p = cmi_xmalloc(sizeof(*p) + (size_t)n);
        memcpy(p->text, data, (size_t)n);
        p->pem = p->text;
        p->subject = p->pem + strlen(p->pem) + 1;
        p->issuer = p->subject + strlen(p->subject) + 1;
    }
    BIO_free(b);
    return p;
}

/* The connection's peer, described on its first request; NULL without a
 * verified certificate (or for a socket cmi did not accept). */
static const peer_t *peer_of(h2o_socket_t *sock)
{
    void **slot = sock != NULL ? cmi_worker_conn_data(sock) : NULL;
    if (slot == NULL)
        return NULL;
    if (*slot == NULL) {
        X509 *cert = cmi_tls_client_certificate(sock);
        if (cert == NULL)
            return NULL;
        *slot = describe(cert);
        X509_free(cert);
    }
    return *slot;
}

void cmi_client_cert_to_msg(cmi_msg_t *msg, h2o_socket_t *sock)
{
    const peer_t *p = peer_of(sock);
    if (p == NULL)
        return;
    /* Copies: a message may outlive its connection. */
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "ssl.client.auth.cert.X509",
                     cmi_value_cstring(cmi_arena_strdup(msg->arena, p->pem)));
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "ssl.client.auth.subject",
                     cmi_value_cstring(cmi_arena_strdup(msg->arena, p->subject)));
    cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, "ssl.client.auth.issuer",
                     cmi_value_cstring(cmi_arena_strdup(msg->arena, p->issuer)));
}

static int refuse(h2o_req_t *req, const cmi_api_t *api, const char *why)
{
    char host[NI_MAXHOST];
    if (cmi_log_enabled(CMI_LOG_DEBUG))
        cmi_log_debug("http", "API %s: refused a request from %s: %s (403)", api->name,
                      cmi_http_peer(req, host, sizeof(host)), why);
    cmi_http_answer(req, 403, NULL, "", 0);
    return -1;
}

int cmi_client_cert_check(h2o_req_t *req, h2o_socket_t *sock, const cmi_api_t *api)
{
    const peer_t *p = peer_of(sock);
    if (p == NULL)
        return refuse(req, api, sock != NULL && sock->ssl != NULL ? "no client certificate" : "not over HTTPS");
    if (api->client_subject != NULL && !cmi_regex_matches(api->client_subject, p->subject, strlen(p->subject)))
        return refuse(req, api, "the client certificate's subject does not match the API's subjectPattern");
    return 0;
}
