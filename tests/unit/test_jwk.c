/* JSON Web Keys to OpenSSL keys (engine/http/jwk.c): RSA and EC keys the
 * test makes, written as a JWKS serves them, come back equal; each fits
 * its algorithms only; keys written wrong, weak, private, off the curve
 * or of another kind are refused with a message. */
#include "config.h"

#include <h2o.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <string.h>

#include "cu_main.h"
#include "http/jwk.h"

static char *b64url(const unsigned char *p, size_t n)
{
    char *out = malloc(n * 4 / 3 + 4);
    h2o_base64_encode(out, p, n, 1);
    return out;
}

static void set_b64(json_t *o, const char *name, const unsigned char *p, size_t n)
{
    char *s = b64url(p, n);
    json_object_set_new(o, name, json_string(s));
    free(s);
}

static void set_bn(json_t *o, const char *name, EVP_PKEY *key, const char *param)
{
    BIGNUM *bn = NULL;
    EVP_PKEY_get_bn_param(key, param, &bn);
    unsigned char buf[2048];
    int n = BN_bn2bin(bn, buf);
    set_b64(o, name, buf, (size_t)n);
    BN_free(bn);
}

static json_t *rsa_jwk(EVP_PKEY *key)
{
    json_t *o = json_pack("{s:s}", "kty", "RSA");
    set_bn(o, "n", key, OSSL_PKEY_PARAM_RSA_N);
    set_bn(o, "e", key, OSSL_PKEY_PARAM_RSA_E);
    return o;
}

static json_t *ec_jwk(EVP_PKEY *key, const char *crv)
{
    unsigned char pub[200];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &len);
    size_t half = (len - 1) / 2;
    json_t *o = json_pack("{s:s, s:s}", "kty", "EC", "crv", crv);
    set_b64(o, "x", pub + 1, half);
    set_b64(o, "y", pub + 1 + half, half);
    return o;
}

static EVP_PKEY *convert(json_t *jwk, char *err, size_t errlen)
{
    err[0] = '\0';
    return cmi_jwk_public_key(jwk, err, errlen);
}

static void test_rsa_round_trip_and_fit(void)
{
    char err[256];
    EVP_PKEY *key = EVP_RSA_gen(2048);
    json_t *jwk = rsa_jwk(key);
    EVP_PKEY *back = convert(jwk, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_EQUAL(EVP_PKEY_eq(key, back), 1);
    CU_ASSERT_TRUE(cmi_jwk_fits(jwk, back, "RS256"));
    CU_ASSERT_TRUE(cmi_jwk_fits(jwk, back, "RS512"));
    CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, "HS256")); /* algorithm confusion: never a MAC key */
    CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, "ES256"));
    CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, "none"));
    CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, "PS256"));
    json_object_set_new(jwk, "alg", json_string("RS384")); /* the key's own alg narrows it */
    CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, "RS256"));
    CU_ASSERT_TRUE(cmi_jwk_fits(jwk, back, "RS384"));
    EVP_PKEY_free(back);
    json_decref(jwk);
    EVP_PKEY_free(key);
}

static void test_ec_round_trip_and_fit(void)
{
    static const struct {
        const char *crv, *alg, *other;
    } cases[] = {{"P-256", "ES256", "ES384"}, {"P-384", "ES384", "ES256"}, {"P-521", "ES512", "ES256"}};
    for (size_t i = 0; i < 3; i++) {
        char err[256];
        EVP_PKEY *key = EVP_EC_gen(cases[i].crv);
        json_t *jwk = ec_jwk(key, cases[i].crv);
        EVP_PKEY *back = convert(jwk, err, sizeof(err));
        CU_ASSERT_PTR_NOT_NULL_FATAL(back);
        CU_ASSERT_EQUAL(EVP_PKEY_eq(key, back), 1);
        CU_ASSERT_TRUE(cmi_jwk_fits(jwk, back, cases[i].alg));
        CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, cases[i].other));
        CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, "RS256"));
        CU_ASSERT_FALSE(cmi_jwk_fits(jwk, back, "HS256"));
        EVP_PKEY_free(back);
        json_decref(jwk);
        EVP_PKEY_free(key);
    }
}

/* Each refusal, with a piece of its message. */
static void refused(json_t *jwk, const char *want)
{
    char err[256];
    EVP_PKEY *k = convert(jwk, err, sizeof(err));
    CU_ASSERT_PTR_NULL(k);
    if (strstr(err, want) == NULL)
        fprintf(stderr, "\nwanted '%s' in: %s\n", want, err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
    EVP_PKEY_free(k);
    json_decref(jwk);
}

static void test_keys_refused(void)
{
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *weak = EVP_RSA_gen(1024), *ec = EVP_EC_gen("P-256");
    json_t *j = rsa_jwk(rsa);
    json_object_del(j, "n");
    refused(j, "\"n\" is missing");
    j = rsa_jwk(rsa);
    json_object_set_new(j, "n", json_string("not*base64url"));
    refused(j, "\"n\" is not base64url");
    refused(rsa_jwk(weak), "1024 bits");
    j = rsa_jwk(rsa);
    json_object_set_new(j, "e", json_string("Ag")); /* 2: even */
    refused(j, "usable RSA exponent");
    j = rsa_jwk(rsa);
    json_object_set_new(j, "d", json_string("AQAB"));
    refused(j, "a private key");
    j = rsa_jwk(rsa);
    json_object_set_new(j, "use", json_string("enc"));
    refused(j, "not for signatures");
    refused(json_pack("{s:s, s:s}", "kty", "oct", "k", "c2VjcmV0"), "key type \"oct\"");
    refused(json_pack("{s:s}", "kid", "x"), "no \"kty\"");
    j = ec_jwk(ec, "P-256");
    json_object_set_new(j, "crv", json_string("P-192"));
    refused(j, "\"crv\"");
    j = ec_jwk(ec, "P-256");
    json_object_set_new(j, "x", json_string("AAAA"));
    refused(j, "32 bytes each");
    /* A point off the curve: y + 1. */
    unsigned char pub[65];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &len);
    pub[64] ^= 1;
    j = ec_jwk(ec, "P-256");
    set_b64(j, "y", pub + 33, 32);
    refused(j, "not on P-256");
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(weak);
    EVP_PKEY_free(ec);
}

int main(void)
{
    CU_TestInfo tests[] = {
        {"RSA: back equal, fits RS only (never HS), a key's alg narrows", test_rsa_round_trip_and_fit},
        {"EC P-256/384/521: back equal, fits its own ES only", test_ec_round_trip_and_fit},
        {"missing, bad base64url, weak, even exponent, private, not for signing, oct, off the curve: refused",
         test_keys_refused},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"jwk", NULL, NULL, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    return cu_run(suites);
}
