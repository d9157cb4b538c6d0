#include "config.h"

#include "http/tls.h"

#include <errno.h>
#include <h2o.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ALPN lists live as long as every context that points at them. */
static const h2o_iovec_t http1_only[] = {{H2O_STRLIT("http/1.1")}, {NULL, 0}};

/* The reason OpenSSL queued last, as text ("" when none); the queue is
 * emptied. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = '\0';
    if (e != 0)
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* "TLSv1.2,TLSv1.3": the lowest and highest, which must leave no gap.  TLS
 * 1.0 and 1.1 are not offered (RFC 8996). */
static int set_protocols(SSL_CTX *ctx, const char *list, char *err, size_t errlen)
{
    int lo = 0, hi = 0;
    const char *p = list ? list : "TLSv1.2,TLSv1.3";
    while (*p) {
        size_t n = strcspn(p, ", ");
        int v = 0;
        if (n == 7 && strncasecmp(p, "TLSv1.2", 7) == 0)
            v = TLS1_2_VERSION;
        else if (n == 7 && strncasecmp(p, "TLSv1.3", 7) == 0)
            v = TLS1_3_VERSION;
        else if (n > 0) {
            snprintf(err, errlen, "protocol '%.*s': cmi offers TLSv1.2 and TLSv1.3 (TLS 1.0 and 1.1 are deprecated: "
                     "RFC 8996)", (int)n, p);
            return -1;
        }
        if (v != 0) {
            lo = lo == 0 || v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        p += n;
        p += strspn(p, ", ");
    }
    if (lo == 0) {
        snprintf(err, errlen, "no protocol given");
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    return 0;
}

static int password_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)rwflag;
    const char *pw = userdata;
    if (pw == NULL)
        return 0;
    int n = (int)strlen(pw);
    if (n > size)
        n = size;
    memcpy(buf, pw, (size_t)n);
    return n;
}

/* OpenSSL 3 reads an old PKCS#12 file (RC2, 3DES: what keytool and
 * openssl wrote before) only with its legacy provider, loaded the first
 * time such a file comes (main thread) and kept for the process's life;
 * loading one provider explicitly turns off the implicit default, so both. */
static OSSL_PROVIDER *legacy_provider, *default_provider;

static int load_legacy_provider(void)
{
    if (legacy_provider == NULL)
        legacy_provider = OSSL_PROVIDER_load(NULL, "legacy");
    if (default_provider == NULL)
        default_provider = OSSL_PROVIDER_load(NULL, "default");
    return legacy_provider != NULL && default_provider != NULL ? 0 : -1;
}

typedef enum { FILE_PEM, FILE_PKCS12, FILE_JKS, FILE_UNREADABLE } file_kind_t;

static file_kind_t file_kind(const char *path)
{
    unsigned char head[16] = {0};
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return FILE_UNREADABLE;
    size_t n = fread(head, 1, sizeof(head), f);
    fclose(f);
    if (n >= 4 && head[0] == 0xFE && head[1] == 0xED && head[2] == 0xFE && head[3] == 0xED)
        return FILE_JKS; /* a Java keystore's magic */
    if (n >= 1 && head[0] == 0x30)
        return FILE_PKCS12; /* DER: a PKCS#12 file starts with a SEQUENCE */
    return FILE_PEM;
}

/* PKCS#12: the leaf, its key and the chain.  Files written by older tools
 * use RC2-40, which OpenSSL 3 keeps in its legacy provider: it is loaded
 * then, once, and said in the message when that fails too. */
static int use_pkcs12(SSL_CTX *ctx, const cmi_tls_settings_t *s, char *err, size_t errlen)
{
    char why[256];
    FILE *f = fopen(s->cert_file, "rb");
    PKCS12 *p12 = f ? d2i_PKCS12_fp(f, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    if (p12 == NULL) {
        snprintf(err, errlen, "%s: not a PKCS#12 file (%s)", s->cert_file, ssl_reason(why, sizeof(why)));
        return -1;
    }
    const char *pw = s->password ? s->password : "";
    if (!PKCS12_verify_mac(p12, pw, -1)) {
        PKCS12_free(p12);
        ERR_clear_error();
        snprintf(err, errlen, "%s: wrong password (the PKCS#12 file's integrity check fails)", s->cert_file);
        return -1;
    }
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    int ok = PKCS12_parse(p12, pw, &key, &cert, &chain);
    if (!ok && ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_UNSUPPORTED) {
        ERR_clear_error();
        if (load_legacy_provider() == 0)
            ok = PKCS12_parse(p12, pw, &key, &cert, &chain);
    }
    PKCS12_free(p12);
    if (!ok || cert == NULL || key == NULL) {
        snprintf(err, errlen, "%s: cannot read the certificate and key (%s)", s->cert_file,
                 ok ? "the file holds no key or no certificate" : ssl_reason(why, sizeof(why)));
        EVP_PKEY_free(key);
        X509_free(cert);
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    ok = SSL_CTX_use_certificate(ctx, cert) && SSL_CTX_use_PrivateKey(ctx, key);
    for (int i = 0; ok && chain != NULL && i < sk_X509_num(chain); i++)
        ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i));
    EVP_PKEY_free(key);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    if (!ok) {
        snprintf(err, errlen, "%s: %s", s->cert_file, ssl_reason(why, sizeof(why)));
        return -1;
    }
    return 0;
}

static int use_pem(SSL_CTX *ctx, const cmi_tls_settings_t *s, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX_set_default_passwd_cb(ctx, password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)s->password);
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
        snprintf(err, errlen, "%s: cannot read the certificate chain (%s)", s->cert_file, ssl_reason(why, sizeof(why)));
        return -1;
    }
    const char *key = s->key_file ? s->key_file : s->cert_file;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            snprintf(err, errlen, "%s: the private key does not match the certificate %s", key, s->cert_file);
        } else {
            snprintf(err, errlen, "%s: cannot read the private key (%s%s)", key, ssl_reason(why, sizeof(why)),
                     s->password ? "" : "; an encrypted key needs its password");
        }
        return -1;
    }
    return 0;
}

static int use_identity(SSL_CTX *ctx, const cmi_tls_settings_t *s, char *err, size_t errlen)
{
    switch (file_kind(s->cert_file)) {
    case FILE_UNREADABLE:
        snprintf(err, errlen, "%s: %s", s->cert_file, strerror(errno));
        return -1;
    case FILE_JKS:
        snprintf(err, errlen, "%s is a Java keystore (JKS), which cmi does not read; convert it to PKCS#12: keytool "
                 "-importkeystore -srckeystore %s -srcstoretype JKS -destkeystore keystore.p12 -deststoretype PKCS12",
                 s->cert_file, s->cert_file);
        return -1;
    case FILE_PKCS12:
        return use_pkcs12(ctx, s, err, errlen);
    case FILE_PEM:
        break;
    }
    return use_pem(ctx, s, err, errlen);
}

static int set_client_verification(SSL_CTX *ctx, const cmi_tls_settings_t *s, char *err, size_t errlen)
{
    if (s->verify_client == CMI_TLS_VERIFY_NONE)
        return 0;
    char why[256];
    if (s->ca_file == NULL) {
        snprintf(err, errlen, "client verification needs a CA file");
        return -1;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ca_file);
    if (names == NULL || SSL_CTX_load_verify_locations(ctx, s->ca_file, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(err, errlen, "%s: cannot read the CA certificates (%s)", s->ca_file, ssl_reason(why, sizeof(why)));
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx,
                       SSL_VERIFY_PEER |
                           (s->verify_client == CMI_TLS_VERIFY_REQUIRE ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       NULL);
    return 0;
}

/* libh2o 2.2.5 has no getter for a connection's SSL*: its private
 * struct st_h2o_socket_ssl_t (lib/common/socket.c) begins with these two
 * members whatever its build options.  This is the one place cmi relies on
 * it; another libh2o version fails the build here. */
#if H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "cmi_tls_client_certificate reads libh2o 2.2's private socket struct: check lib/common/socket.c"
#endif
struct h2o22_socket_ssl_prefix {
    SSL_CTX *ssl_ctx;
    SSL *ossl;
};

X509 *cmi_tls_client_certificate(h2o_socket_t *sock)
{
    if (sock == NULL || sock->ssl == NULL)
        return NULL;
    SSL *ssl = ((struct h2o22_socket_ssl_prefix *)sock->ssl)->ossl;
    if (ssl == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return NULL;
    return SSL_get1_peer_certificate(ssl); /* kept in the session: resumed connections have it too */
}

static const char *const verify_names[] = {"none", "optional", "require"};

int cmi_tls_verify_parse(const char *v)
{
    for (int i = 0; i < 3; i++)
        if (strcasecmp(v, verify_names[i]) == 0)
            return i;
    return -1;
}

const char *cmi_tls_verify_name(int verify)
{
    return verify >= 0 && verify < 3 ? verify_names[verify] : "?";
}

SSL_CTX *cmi_tls_context_create(const cmi_tls_settings_t *s, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "cannot make a TLS context (%s)", ssl_reason(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Resumption: OpenSSL's own session cache and tickets (a session
     * lookup callback of cmi's own would switch libh2o to its asynchronous
     * resumption); the id context makes resumption work with client
     * certificates too. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static const unsigned char sid_ctx[] = "cmi";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (set_protocols(ctx, s->protocols, err, errlen) != 0)
        goto fail;
    if (s->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, s->ciphers) != 1) {
        snprintf(err, errlen, "ciphers '%s': none OpenSSL knows", s->ciphers);
        goto fail;
    }
    if (s->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, s->ciphersuites) != 1) {
        snprintf(err, errlen, "TLS 1.3 cipher suites '%s': none OpenSSL knows", s->ciphersuites);
        goto fail;
    }
    if (s->cert_file == NULL) {
        snprintf(err, errlen, "a certificate is needed");
        goto fail;
    }
    if (use_identity(ctx, s, err, errlen) != 0)
        goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s: the private key does not match the certificate", s->key_file ? s->key_file : s->cert_file);
        goto fail;
    }
    if (set_client_verification(ctx, s, err, errlen) != 0)
        goto fail;
    h2o_ssl_register_alpn_protocols(ctx, s->http2 ? h2o_alpn_protocols : http1_only);
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
