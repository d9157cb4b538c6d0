#include "config.h"

#include "http/client_cert.h"

#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

#include "core/log.h"
#include "core/regex.h"
#include "http/answer.h"
#include "http/tls.h"

/* An X.509 name as RFC 2253 writes it ("CN=orders,O=Example"), in arena
 * memory, or NULL. */
static char *name_text(cmi_arena_t *arena, const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b != NULL && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        out = arena != NULL ? cmi_arena_strndup(arena, p, (size_t)n) : strndup(p, (size_t)n);
    }
    BIO_free(b);
    return out;
}

static char *pem_text(cmi_arena_t *arena, X509 *cert)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b != NULL && PEM_write_bio_X509(b, cert) == 1) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        out = cmi_arena_strndup(arena, p, (size_t)n);
    }
    BIO_free(b);
    return out;
}

static void set_prop(cmi_msg_t *msg, const char *name, const char *value)
{
    if (value != NULL)
        cmi_msg_prop_set(msg, CMI_SCOPE_AXIS2, name, cmi_value_cstring(value));
}

void cmi_client_cert_to_msg(cmi_msg_t *msg, h2o_socket_t *sock)
{
    X509 *cert = cmi_tls_client_certificate(sock);
    if (cert == NULL)
        return;
    set_prop(msg, "ssl.client.auth.cert.X509", pem_text(msg->arena, cert));
    set_prop(msg, "ssl.client.auth.subject", name_text(msg->arena, X509_get_subject_name(cert)));
    set_prop(msg, "ssl.client.auth.issuer", name_text(msg->arena, X509_get_issuer_name(cert)));
    X509_free(cert);
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
    X509 *cert = cmi_tls_client_certificate(sock);
    if (cert == NULL)
        return refuse(req, api, sock != NULL && sock->ssl != NULL ? "no client certificate" : "not over HTTPS");
    int ok = 1;
    if (api->client_subject != NULL) {
        char *subject = name_text(NULL, X509_get_subject_name(cert));
        ok = subject != NULL && cmi_regex_matches(api->client_subject, subject, strlen(subject));
        free(subject);
    }
    X509_free(cert);
    return ok ? 0 : refuse(req, api, "the client certificate's subject does not match the API's subjectPattern");
}
