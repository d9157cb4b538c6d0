/* The HTTPS listener's TLS context (engine/http/tls.c) from files the test
 * makes: a key and a self-signed certificate as PEM, the same as PKCS#12
 * (right and wrong password), a file with a Java keystore's magic, a key
 * that does not match, protocols cmi refuses. */
#include "config.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu_main.h"
#include "http/tls.h"

static char dir[] = "/tmp/cmi-tls-XXXXXX";
static char cert_pem[256], key_pem[256], other_key[256], p12[256], jks[256];

static EVP_PKEY *make_key(void)
{
    return EVP_EC_gen("P-256");
}

static X509 *make_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, key, EVP_sha256());
    return x;
}

static void write_key(const char *path, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static int setup(void)
{
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(cert_pem, sizeof(cert_pem), "%s/cert.pem", dir);
    snprintf(key_pem, sizeof(key_pem), "%s/key.pem", dir);
    snprintf(other_key, sizeof(other_key), "%s/other.pem", dir);
    snprintf(p12, sizeof(p12), "%s/id.p12", dir);
    snprintf(jks, sizeof(jks), "%s/id.jks", dir);
    EVP_PKEY *key = make_key(), *other = make_key();
    X509 *cert = make_cert(key);
    write_key(key_pem, key);
    write_key(other_key, other);
    FILE *f = fopen(cert_pem, "w");
    PEM_write_X509(f, cert);
    fclose(f);
    PKCS12 *bundle = PKCS12_create("secret", "cmi", key, cert, NULL, 0, 0, 0, 0, 0);
    f = fopen(p12, "wb");
    i2d_PKCS12_fp(f, bundle);
    fclose(f);
    static const unsigned char magic[] = {0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2};
    f = fopen(jks, "wb");
    fwrite(magic, 1, sizeof(magic), f);
    fclose(f);
    PKCS12_free(bundle);
    X509_free(cert);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    return 0;
}

static int teardown(void)
{
    const char *files[] = {cert_pem, key_pem, other_key, p12, jks};
    for (size_t i = 0; i < 5; i++)
        unlink(files[i]);
    rmdir(dir);
    return 0;
}

/* Builds a context from s; *err gets the message when it fails. */
static int build(const cmi_tls_settings_t *s, char *err, size_t len)
{
    err[0] = '\0';
    SSL_CTX *ctx = cmi_tls_context_create(s, err, len);
    if (ctx == NULL)
        return -1;
    SSL_CTX_free(ctx);
    return 0;
}

static void test_pem_and_defaults(void)
{
    char err[512];
    cmi_tls_settings_t s = {.cert_file = cert_pem, .key_file = key_pem};
    SSL_CTX *ctx = cmi_tls_context_create(&s, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    CU_ASSERT_EQUAL(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
    SSL_CTX_free(ctx);
    s.protocols = "TLSv1.3";
    ctx = cmi_tls_context_create(&s, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
    SSL_CTX_free(ctx);
}

static void test_pkcs12_and_its_password(void)
{
    char err[512];
    cmi_tls_settings_t s = {.cert_file = p12, .password = "secret"};
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), 0);
    s.password = "wrong";
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "wrong password"));
}

static void test_refusals_name_the_problem(void)
{
    char err[512];
    cmi_tls_settings_t s = {.cert_file = jks};
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "keytool -importkeystore"));
    s = (cmi_tls_settings_t){.cert_file = cert_pem, .key_file = other_key};
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not match"));
    s = (cmi_tls_settings_t){.cert_file = cert_pem, .key_file = key_pem, .protocols = "TLSv1.1,TLSv1.2"};
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "RFC 8996"));
    s = (cmi_tls_settings_t){.cert_file = "/nonexistent/cert.pem"};
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file"));
    s = (cmi_tls_settings_t){.cert_file = cert_pem, .key_file = key_pem, .verify_client = CMI_TLS_VERIFY_REQUIRE};
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "CA file"));
    s.ca_file = cert_pem; /* the self-signed certificate as its own CA */
    CU_ASSERT_EQUAL(build(&s, err, sizeof(err)), 0);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"PEM files, TLS 1.2 and 1.3 by default", test_pem_and_defaults},
        {"PKCS#12 with its password, and a wrong one", test_pkcs12_and_its_password},
        {"JKS, a mismatched key, old protocols, a missing file, no CA: clear errors", test_refusals_name_the_problem},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"tls", setup, teardown, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return cu_run(suites);
}
