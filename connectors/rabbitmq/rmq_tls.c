/* TLS to the broker (docs/rabbitmq.md, "TLS and authentication").
 *
 * proton 0.37 reads credentials from PEM files only, by path, and keeps no
 * way to hand it an SSL_CTX.  So the key and trust stores (PEM or PKCS#12,
 * as MI's keyStoreType/trustStoreType say or as their first bytes show)
 * are read and checked here with OpenSSL, then written as PEM into
 * anonymous memory files (memfd: never on a disk, readable only by this
 * process, gone with it even after a kill -9) that proton and the
 * diagnosis read through /proc/self/fd (the key's only until proton has
 * read it).  One domain per connection config; each connection's SSL
 * holds the domain's SSL_CTX (OpenSSL's reference), so the domain may go
 * before them.
 *
 * proton loads the system's CAs into every client domain and keeps its
 * SSL_CTX to itself; a trust store must replace those CAs (MI trusts its
 * trust store alone), and trustEverything must not lower the security
 * level.  OpenSSL calls every ex_data index of SSL_CTX for each new
 * context: an index that lives only while this thread makes its domain
 * hands cmi the context (catch_ctx). */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <proton/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rmq_tls.h"

#define STORE_MAX_BYTES (4 << 20) /* a key or trust store larger than this is not one */
#define PKCS12_MAX_ITER 5000000   /* Java's keytool cap: more only burns CPU at start-up */

typedef struct {
    int fd;
    char path[40];
} memfile_t;

struct rmq_tls {
    pn_ssl_domain_t *domain;
    SSL_CTX *ctx; /* the domain's (catch_ctx) */
    memfile_t ca; /* the trust store, for the diagnosis too */
    int verify_peer, verify_host;
    long curl_version;
};

static const char *ssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, n, "no detail from OpenSSL");
    else
        ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

/* ---- memory files ---------------------------------------------------------------------- */

static void memfile_close(memfile_t *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    m->path[0] = '\0';
}

/* bio's bytes into a new memory file. */
static int memfile_from_bio(memfile_t *m, const char *name, BIO *bio, char *err, size_t n)
{
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    m->fd = memfd_create(name, MFD_CLOEXEC);
    if (m->fd < 0) {
        snprintf(err, n, "memfd_create: %s", strerror(errno));
        return -1;
    }
    for (long off = 0; off < len;) {
        ssize_t w = write(m->fd, data + off, (size_t)(len - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, n, "writing a memory file: %s", strerror(errno));
            memfile_close(m);
            return -1;
        }
        off += w;
    }
    snprintf(m->path, sizeof(m->path), "/proc/self/fd/%d", m->fd);
    return 0;
}

/* ---- reading the stores ---------------------------------------------------------------- */

/* OpenSSL 3 reads PKCS#12 files of older tools (RC2-40: keytool and
 * openssl before 3) only with its legacy provider: loaded the first time
 * such a file comes, kept for the process's life (as the engine does for
 * its listeners); loading one provider turns off the implicit default, so
 * both. */
static int load_legacy_provider(void)
{
    static OSSL_PROVIDER *legacy, *deflt;
    if (legacy == NULL)
        legacy = OSSL_PROVIDER_load(NULL, "legacy");
    if (deflt == NULL)
        deflt = OSSL_PROVIDER_load(NULL, "default");
    return legacy != NULL && deflt != NULL ? 0 : -1;
}

typedef struct {
    unsigned char *data;
    size_t len;
} bytes_t;

static void bytes_free(bytes_t *b)
{
    if (b->data != NULL)
        OPENSSL_cleanse(b->data, b->len); /* a key store's key may be in clear */
    free(b->data);
    b->data = NULL;
}

/* The file's bytes, at most STORE_MAX_BYTES, from a regular file only (a
 * FIFO or a device would block the start-up or never end). */
static int read_file(const char *what, const char *path, bytes_t *b, char *err, size_t n)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, n, "%s %s: %s", what, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > STORE_MAX_BYTES) {
        snprintf(err, n, "%s %s: %s", what, path, S_ISREG(st.st_mode) ? "larger than 4 MiB" : "not a regular file");
        close(fd);
        return -1;
    }
    b->data = rmq_xcalloc(1, (size_t)st.st_size + 1);
    b->len = 0;
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, b->data + b->len, (size_t)st.st_size - b->len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, n, "%s %s: %s", what, path, strerror(errno));
            rc = -1;
        }
        if (got <= 0 || (b->len += (size_t)got) == (size_t)st.st_size)
            break;
    }
    close(fd);
    if (rc != 0)
        bytes_free(b);
    return rc;
}

/* The store's kind: as configured, else from its first bytes (a Java
 * keystore's magic, DER's SEQUENCE, else PEM). */
static int store_kind(const bytes_t *b, int configured)
{
    if (configured >= 0)
        return configured;
    const unsigned char *u = b->data;
    if (b->len >= 4 && u[0] == 0xFE && u[1] == 0xED && u[2] == 0xFE && u[3] == 0xED)
        return RMQ_STORE_JKS;
    return b->len >= 1 && u[0] == 0x30 ? RMQ_STORE_PKCS12 : RMQ_STORE_PEM;
}

static int refuse_jks(const char *what, const char *path, char *err, size_t n)
{
    snprintf(err, n, "%s %s is a Java keystore (JKS), which cmi does not read; convert it with `keytool "
             "-importkeystore -srckeystore %s -srcstoretype JKS -destkeystore store.p12 -deststoretype PKCS12` and "
             "use the PKCS12 file", what, path, path);
    return -1;
}

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
    STACK_OF(X509) *certs; /* the chain (key store) or the CAs (trust store) */
} store_t;

static void store_free(store_t *s)
{
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
    sk_X509_pop_free(s->certs, X509_free);
    memset(s, 0, sizeof(*s));
}

static int read_pkcs12(const bytes_t *b, const char *what, const char *path, const char *password, store_t *s,
                       char *err, size_t n)
{
    char why[256];
    const unsigned char *in = b->data;
    PKCS12 *p12 = d2i_PKCS12(NULL, &in, (long)b->len);
    if (p12 == NULL) {
        snprintf(err, n, "%s %s: not a PKCS#12 file (%s)", what, path, ssl_reason(why, sizeof(why)));
        return -1;
    }
    const char *pw = password ? password : "";
    const ASN1_INTEGER *iter = NULL;
    if (PKCS12_mac_present(p12))
        PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
    if (iter != NULL && ASN1_INTEGER_get(iter) > PKCS12_MAX_ITER) {
        PKCS12_free(p12);
        snprintf(err, n, "%s %s: its integrity check asks for %ld iterations (at most %d)", what, path,
                 ASN1_INTEGER_get(iter), PKCS12_MAX_ITER);
        return -1;
    }
    /* keytool writes trust stores without a password with no MAC at all */
    if (PKCS12_mac_present(p12) && !PKCS12_verify_mac(p12, pw, -1) &&
        !(password == NULL && PKCS12_verify_mac(p12, NULL, 0))) {
        PKCS12_free(p12);
        ERR_clear_error();
        snprintf(err, n, "%s %s: wrong password (the PKCS#12 file's integrity check fails)", what, path);
        return -1;
    }
    int ok = PKCS12_parse(p12, pw, &s->key, &s->cert, &s->certs);
    if (!ok && ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_UNSUPPORTED && load_legacy_provider() == 0) {
        ERR_clear_error();
        ok = PKCS12_parse(p12, pw, &s->key, &s->cert, &s->certs);
    }
    PKCS12_free(p12);
    if (!ok) {
        snprintf(err, n, "%s %s: cannot read it (%s)", what, path, ssl_reason(why, sizeof(why)));
        return -1;
    }
    return 0;
}

static int password_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)rwflag;
    const char *pw = userdata;
    int len = pw ? (int)strlen(pw) : 0;
    if (len > size)
        len = size;
    if (len > 0)
        memcpy(buf, pw, (size_t)len);
    return len;
}

/* Every certificate of a PEM file, and its first private key when asked
 * (decrypted with the password: PKCS#8 and the older Proc-Type form). */
static int read_pem(const bytes_t *b, const char *what, const char *path, const char *password, int want_key,
                    store_t *s, char *err, size_t n)
{
    char why[256];
    BIO *bio = BIO_new_mem_buf(b->data, (int)b->len);
    s->certs = sk_X509_new_null();
    X509 *x;
    while (bio != NULL && s->certs != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (sk_X509_push(s->certs, x) <= 0)
            X509_free(x);
    ERR_clear_error(); /* the end of the file */
    BIO_free(bio);
    if (!want_key)
        return 0;
    if (memmem(b->data, b->len, "PRIVATE KEY-----", 16) == NULL) {
        snprintf(err, n, "%s %s holds no private key: give one PEM file with the certificate and its key, or a "
                 "PKCS#12 file", what, path);
        return -1;
    }
    bio = BIO_new_mem_buf(b->data, (int)b->len);
    s->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, password_cb, (void *)password) : NULL;
    BIO_free(bio);
    if (s->key == NULL) {
        snprintf(err, n, "%s %s: no private key can be read from it (%s%s)", what, path,
                 ssl_reason(why, sizeof(why)), password ? "" : "; an encrypted key needs keyStorePassword");
        return -1;
    }
    return 0;
}

static int read_store(const char *what, const char *path, int type, const char *password, int want_key, store_t *s,
                      char *err, size_t n)
{
    bytes_t b = {0};
    if (read_file(what, path, &b, err, n) != 0)
        return -1;
    int rc;
    switch (store_kind(&b, type)) {
    case RMQ_STORE_JKS:
        rc = refuse_jks(what, path, err, n);
        break;
    case RMQ_STORE_PKCS12:
        rc = read_pkcs12(&b, what, path, password, s, err, n);
        break;
    default:
        rc = read_pem(&b, what, path, password, want_key, s, err, n);
        break;
    }
    bytes_free(&b);
    if (rc != 0)
        store_free(s);
    return rc;
}

/* ---- the key store: cmi's certificate and key ----------------------------------------------- */

/* A PEM key store's leaf is the certificate that goes with its key. */
static int pick_leaf(store_t *s, const char *path, char *err, size_t n)
{
    if (s->key == NULL) {
        snprintf(err, n, "keyStoreLocation %s holds no private key", path);
        return -1;
    }
    for (int i = 0; s->cert == NULL && s->certs != NULL && i < sk_X509_num(s->certs); i++)
        if (X509_check_private_key(sk_X509_value(s->certs, i), s->key) == 1)
            s->cert = sk_X509_delete(s->certs, i);
    ERR_clear_error();
    if (s->cert == NULL) {
        snprintf(err, n, "keyStoreLocation %s holds no certificate for its private key", path);
        return -1;
    }
    return 0;
}

static void warn_validity(const cmi_host_t *host, const char *component, X509 *cert, const char *path)
{
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
        host->log(CMI_LOG_WARN, component, "the client certificate in %s has expired: the broker will refuse it",
                  path);
    else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
        host->log(CMI_LOG_WARN, component, "the client certificate in %s is not valid yet (check the clock)", path);
}

static int write_identity(memfile_t *cert, memfile_t *key_file, const store_t *s, char *err, size_t n)
{
    BIO *certs = BIO_new(BIO_s_mem()), *key = BIO_new(BIO_s_mem());
    int ok = certs != NULL && key != NULL && PEM_write_bio_X509(certs, s->cert) == 1 &&
             PEM_write_bio_PrivateKey(key, s->key, NULL, NULL, 0, NULL, NULL) == 1;
    for (int i = 0; ok && s->certs != NULL && i < sk_X509_num(s->certs); i++)
        ok = PEM_write_bio_X509(certs, sk_X509_value(s->certs, i)) == 1;
    int rc = -1;
    if (!ok)
        snprintf(err, n, "cannot write the client certificate as PEM");
    else if (memfile_from_bio(cert, "cmi-rmq-cert", certs, err, n) == 0 &&
             memfile_from_bio(key_file, "cmi-rmq-key", key, err, n) == 0)
        rc = 0;
    BIO_free(certs);
    if (key != NULL) { /* the key's clear bytes do not outlive the memory file */
        char *data;
        long len = BIO_get_mem_data(key, &data);
        if (len > 0)
            OPENSSL_cleanse(data, (size_t)len);
    }
    BIO_free(key);
    return rc;
}

static int use_identity(rmq_tls_t *tls, const cmi_host_t *host, const char *component, const rmq_init_params_t *p,
                        char *err, size_t n)
{
    if (p->keystore_location == NULL)
        return 0;
    store_t s = {0};
    int type = CMI_PARAM_GIVEN(p, RMQ_I_KEYSTORE_TYPE) ? p->keystore_type : -1;
    if (read_store("keyStoreLocation", p->keystore_location, type, p->keystore_password, 1, &s, err, n) != 0)
        return -1;
    if (pick_leaf(&s, p->keystore_location, err, n) != 0) {
        store_free(&s);
        return -1;
    }
    warn_validity(host, component, s.cert, p->keystore_location);
    memfile_t cert = {.fd = -1}, key = {.fd = -1};
    int rc = write_identity(&cert, &key, &s, err, n);
    store_free(&s);
    if (rc == 0 && pn_ssl_domain_set_credentials(tls->domain, cert.path, key.path, NULL) != 0) {
        snprintf(err, n, "keyStoreLocation %s: proton refused the certificate and key", p->keystore_location);
        rc = -1;
    }
    memfile_close(&cert); /* proton has read them into its SSL_CTX */
    memfile_close(&key);
    return rc;
}

/* ---- the trust store ------------------------------------------------------------------------- */

static int use_trust(rmq_tls_t *tls, const rmq_init_params_t *p, char *err, size_t n)
{
    if (p->truststore_location == NULL)
        return 0; /* the system's CAs, which proton loads in every domain */
    if (p->trust_everything)
        return 0; /* nothing is checked against it */
    store_t s = {0};
    int type = CMI_PARAM_GIVEN(p, RMQ_I_TRUSTSTORE_TYPE) ? p->truststore_type : -1;
    if (read_store("trustStoreLocation", p->truststore_location, type, p->truststore_password, 0, &s, err, n) != 0)
        return -1;
    BIO *bio = BIO_new(BIO_s_mem());
    int count = 0, ok = bio != NULL;
    if (s.cert != NULL) /* a PKCS#12 trust store with a key: its certificate is trusted too */
        ok = ok && PEM_write_bio_X509(bio, s.cert) == 1 && ++count;
    for (int i = 0; ok && s.certs != NULL && i < sk_X509_num(s.certs); i++, count++)
        ok = PEM_write_bio_X509(bio, sk_X509_value(s.certs, i)) == 1;
    store_free(&s);
    int rc = -1;
    if (!ok)
        snprintf(err, n, "trustStoreLocation %s: cannot write it as PEM", p->truststore_location);
    else if (count == 0)
        snprintf(err, n, "trustStoreLocation %s holds no certificate", p->truststore_location);
    else if (memfile_from_bio(&tls->ca, "cmi-rmq-ca", bio, err, n) == 0)
        rc = 0;
    BIO_free(bio);
    /* The trust store alone: the store proton filled with the system's CAs
     * is replaced by an empty one before the file is loaded into it. */
    X509_STORE *only = rc == 0 ? X509_STORE_new() : NULL;
    if (rc == 0 && only == NULL) {
        snprintf(err, n, "out of memory");
        rc = -1;
    }
    if (only != NULL)
        SSL_CTX_set_cert_store(tls->ctx, only);
    if (rc == 0 && pn_ssl_domain_set_trusted_ca_db(tls->domain, tls->ca.path) != 0) {
        snprintf(err, n, "trustStoreLocation %s: proton refused the certificates", p->truststore_location);
        rc = -1;
    }
    return rc;
}

/* ---- versions and verification ------------------------------------------------------------- */

/* MI's sslVersion names a Java SSLContext protocol; cmi takes it as the
 * lowest version offered (TLSv1.2 offers 1.2 and 1.3, as a Java client
 * with default settings does).  proton matches names by prefix: "TLS"
 * itself must not reach it. */
static const char *protocols_of(const char *v, long *curl_version)
{
    if (strcmp(v, "TLSv1.3") == 0) {
        *curl_version = CURL_SSLVERSION_TLSv1_3;
        return "TLSv1.3";
    }
    if (strcmp(v, "TLSv1.2") == 0 || strcmp(v, "TLS") == 0) {
        *curl_version = CURL_SSLVERSION_TLSv1_2;
        return "TLSv1.2 TLSv1.3";
    }
    return NULL;
}

int rmq_tls_check_version(const char *param, const char *v, char *err, size_t n)
{
    long ignored;
    if (protocols_of(v, &ignored) != NULL)
        return 0;
    snprintf(err, n, "%s %s: cmi speaks TLSv1.2 and TLSv1.3 (give TLSv1.2, TLSv1.3 or TLS); SSLv3, TLSv1 and "
             "TLSv1.1 are broken", param, v);
    return -1;
}

static int set_versions(rmq_tls_t *tls, const rmq_init_params_t *p, char *err, size_t n)
{
    if (rmq_tls_check_version("sslVersion", p->ssl_version, err, n) != 0)
        return -1;
    const char *protocols = protocols_of(p->ssl_version, &tls->curl_version);
    if (pn_ssl_domain_set_protocols(tls->domain, protocols) != 0) {
        snprintf(err, n, "sslVersion %s: this proton/OpenSSL cannot limit TLS to %s", p->ssl_version, protocols);
        return -1;
    }
    return 0;
}

static int set_verification(rmq_tls_t *tls, const cmi_host_t *host, const char *component,
                            const rmq_init_params_t *p, char *err, size_t n)
{
    pn_ssl_verify_mode_t mode = PN_SSL_VERIFY_PEER_NAME;
    tls->verify_peer = tls->verify_host = 1;
    if (p->trust_everything) {
        mode = PN_SSL_ANONYMOUS_PEER;
        tls->verify_peer = tls->verify_host = 0;
        host->log(CMI_LOG_WARN, component, "trustEverything: the broker's certificate is not checked; anyone on the "
                  "path can pose as the broker and read the credentials and messages");
    } else if (!p->hostname_verification) {
        mode = PN_SSL_VERIFY_PEER;
        tls->verify_host = 0;
        host->log(CMI_LOG_WARN, component, "hostnameVerificationEnabled is false: any certificate the trust store "
                  "(%s) vouches for is taken for the broker, whatever name it carries",
                  p->truststore_location ? "trustStoreLocation" : "the system's CAs, every public CA");
    }
    /* proton's anonymous mode would also offer anonymous ciphers and drop
     * OpenSSL's security level to 0: trustEverything gives up the check
     * of the certificate, nothing else. */
    int level = SSL_CTX_get_security_level(tls->ctx);
    if ((mode == PN_SSL_ANONYMOUS_PEER && pn_ssl_domain_set_ciphers(tls->domain, "DEFAULT:!aNULL:!eNULL") != 0) ||
        pn_ssl_domain_set_peer_authentication(tls->domain, mode, NULL) != 0) {
        snprintf(err, n, "proton cannot set the certificate verification");
        return -1;
    }
    SSL_CTX_set_security_level(tls->ctx, level);
    return 0;
}

/* ---- the domain ------------------------------------------------------------------------------- */

static _Thread_local int catching;
static _Thread_local SSL_CTX *caught;

static void catch_ctx(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)ptr, (void)ad, (void)idx, (void)argl, (void)argp;
    if (catching && caught == NULL)
        caught = parent; /* this thread's pn_ssl_domain() is making it */
}

/* A client domain and its SSL_CTX.  The index is freed before returning:
 * OpenSSL never calls into this module once it is unloaded. */
static pn_ssl_domain_t *domain_and_ctx(SSL_CTX **ctx)
{
    int idx = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, catch_ctx, NULL, NULL);
    catching = 1;
    caught = NULL;
    pn_ssl_domain_t *d = idx >= 0 ? pn_ssl_domain(PN_SSL_MODE_CLIENT) : NULL;
    catching = 0;
    if (idx >= 0)
        CRYPTO_free_ex_index(CRYPTO_EX_INDEX_SSL_CTX, idx);
    *ctx = caught;
    caught = NULL;
    if (d != NULL && *ctx == NULL) {
        pn_ssl_domain_free(d);
        d = NULL;
    }
    return d;
}

rmq_tls_t *rmq_tls_create(const cmi_host_t *host, const char *component, const rmq_init_params_t *p, char *err,
                          size_t n)
{
    rmq_tls_t *tls = rmq_xcalloc(1, sizeof(*tls));
    tls->ca.fd = -1;
    tls->domain = domain_and_ctx(&tls->ctx);
    if (tls->domain == NULL) {
        snprintf(err, n, "this proton or OpenSSL cannot make a TLS client domain");
        free(tls);
        return NULL;
    }
    if (set_versions(tls, p, err, n) != 0 || use_trust(tls, p, err, n) != 0 ||
        use_identity(tls, host, component, p, err, n) != 0 || set_verification(tls, host, component, p, err, n) != 0) {
        rmq_tls_destroy(tls);
        return NULL;
    }
    return tls;
}

void rmq_tls_destroy(rmq_tls_t *tls)
{
    if (tls == NULL)
        return;
    pn_ssl_domain_free(tls->domain); /* connections' SSLs keep the SSL_CTX */
    memfile_close(&tls->ca);
    free(tls);
}

int rmq_tls_attach(rmq_tls_t *tls, pn_transport_t *t, const char *host)
{
    pn_ssl_t *ssl = pn_ssl(t);
    if (ssl == NULL || pn_ssl_init(ssl, tls->domain, NULL) != 0)
        return -1;
    return pn_ssl_set_peer_hostname(ssl, host) == 0 ? 0 : -1;
}

void rmq_tls_files(const rmq_tls_t *tls, rmq_tls_files_t *out)
{
    out->ca_file = tls->ca.fd >= 0 ? tls->ca.path : NULL;
    out->verify_peer = tls->verify_peer;
    out->verify_host = tls->verify_host;
    out->min_version = tls->curl_version;
}

/* ---- the diagnosis ---------------------------------------------------------------------------- */

void rmq_tls_diagnose(const rmq_tls_files_t *f, const char *host, const char *port, long timeout_ms, char *why,
                      size_t n)
{
    char url[600], errbuf[CURL_ERROR_SIZE] = "";
    snprintf(url, sizeof(url), "https://%s:%s/", host, port);
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(why, n, "(no diagnosis: curl_easy_init failed)");
        return;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, (long)f->verify_peer);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, f->verify_host ? 2L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, f->min_version);
    if (f->ca_file != NULL)
        curl_easy_setopt(curl, CURLOPT_CAINFO, f->ca_file);
    CURLcode rc = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    if (rc == CURLE_OK)
        why[0] = '\0';
    else
        snprintf(why, n, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
}
