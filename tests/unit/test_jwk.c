/* JSON Web Keys to OpenSSL keys (engine/http/jwk.c): RSA and EC keys the
 * test makes, written as a JWKS serves them, come back equal; each fits
 * its algorithms only; keys written wrong, weak, private, off the curve
 * or of another kind are refused with a message.
 *
 * Then tokens (engine/http/jwt.c): signed by libjwt, an implementation
 * independent of cmi's, and checked by cmi against the keys as JWKs; the
 * claims policy at its boundaries; key sets. */
#include "config.h"

#include <h2o.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <string.h>

#include <errno.h>
#include <jwt.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "cu_main.h"
#include "http/jwk.h"
#include "http/jwt.h"

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


/* ---- tokens ---------------------------------------------------------------- */

#define NOW 1900000000

static char *private_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

/* A token libjwt signs: alg with key (a PEM private key or an HMAC secret). */
static char *libjwt_sign(jwt_alg_t alg, const char *key, const char *kid, const char *claims)
{
    jwt_t *t = NULL;
    CU_ASSERT_EQUAL_FATAL(jwt_new(&t), 0);
    CU_ASSERT_EQUAL(jwt_add_grants_json(t, claims), 0);
    if (kid != NULL)
        CU_ASSERT_EQUAL(jwt_add_header(t, "kid", kid), 0);
    CU_ASSERT_EQUAL(jwt_set_alg(t, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *s = jwt_encode_str(t);
    jwt_free(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

static cmi_jwt_keyset_t *keyset_of(json_t *keys)
{
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, 0);
    json_decref(doc);
    char skip[160], err[256];
    size_t skipped = 0;
    cmi_jwt_keyset_t *ks = cmi_jwt_keyset_parse(text, strlen(text), &skipped, skip, sizeof(skip), err, sizeof(err));
    free(text);
    CU_ASSERT_PTR_NOT_NULL(ks);
    return ks;
}

static cmi_jwt_result_t verify(const char *token, const cmi_jwt_keyset_t *ks, const char *secret, json_t **claims)
{
    const cmi_jwt_keyset_t *sets[1] = {ks};
    cmi_jwt_keys_t keys = {sets, ks != NULL, (const unsigned char *)secret, secret ? strlen(secret) : 0};
    const char *why = NULL;
    cmi_jwt_result_t rc = cmi_jwt_verify(token, strlen(token), &keys, claims, &why);
    CU_ASSERT_TRUE(rc == CMI_JWT_OK || why != NULL);
    return rc;
}

static json_t *with_kid(json_t *jwk, const char *kid)
{
    json_object_set_new(jwk, "kid", json_string(kid));
    return jwk;
}

static void test_libjwt_tokens_verify(void)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    static const char claims[] = "{\"sub\":\"alice\",\"exp\":1900000600}";
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *p256 = EVP_EC_gen("P-256"), *p384 = EVP_EC_gen("P-384"),
             *p521 = EVP_EC_gen("P-521");
    char *rsa_pem = private_pem(rsa), *p256_pem = private_pem(p256), *p384_pem = private_pem(p384),
         *p521_pem = private_pem(p521);
    cmi_jwt_keyset_t *ks = keyset_of(json_pack("[o,o,o,o]", with_kid(rsa_jwk(rsa), "r"),
                                               with_kid(ec_jwk(p256, "P-256"), "e256"),
                                               with_kid(ec_jwk(p384, "P-384"), "e384"),
                                               with_kid(ec_jwk(p521, "P-521"), "e521")));
    CU_ASSERT_EQUAL(cmi_jwt_keyset_size(ks), 4);
    struct {
        jwt_alg_t alg;
        const char *key, *kid;
    } cases[] = {
        {JWT_ALG_RS256, rsa_pem, "r"},    {JWT_ALG_RS384, rsa_pem, "r"},    {JWT_ALG_RS512, rsa_pem, NULL},
        {JWT_ALG_ES256, p256_pem, "e256"}, {JWT_ALG_ES384, p384_pem, "e384"}, {JWT_ALG_ES512, p521_pem, "e521"},
        {JWT_ALG_HS256, secret, NULL},    {JWT_ALG_HS384, secret, NULL},    {JWT_ALG_HS512, secret, "any"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = libjwt_sign(cases[i].alg, cases[i].key, cases[i].kid, claims);
        json_t *c = NULL;
        CU_ASSERT_EQUAL(verify(t, ks, secret, &c), CMI_JWT_OK);
        CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "sub")), "alice");
        json_decref(c);
        /* Tampered: one character of the payload. */
        char *dot = strchr(t, '.');
        dot[2] = dot[2] == 'A' ? 'B' : 'A';
        CU_ASSERT_EQUAL(verify(t, ks, secret, &c), CMI_JWT_SIGNATURE);
        CU_ASSERT_PTR_NULL(c);
        free(t);
    }
    /* Without the secret an HS token is refused, not checked with a key. */
    char *t = libjwt_sign(JWT_ALG_HS256, secret, NULL, claims);
    json_t *c = NULL;
    CU_ASSERT_EQUAL(verify(t, ks, NULL, &c), CMI_JWT_ALG);
    free(t);
    /* An EC token under the RSA key's kid, an unknown kid. */
    t = libjwt_sign(JWT_ALG_ES256, p256_pem, "r", claims);
    CU_ASSERT_EQUAL(verify(t, ks, NULL, &c), CMI_JWT_ALG);
    free(t);
    t = libjwt_sign(JWT_ALG_RS256, rsa_pem, "gone", claims);
    CU_ASSERT_EQUAL(verify(t, ks, NULL, &c), CMI_JWT_UNKNOWN_KID);
    free(t);
    cmi_jwt_keyset_unref(ks);
    free(rsa_pem);
    free(p256_pem);
    free(p384_pem);
    free(p521_pem);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
}

/* Why cmi checks signatures itself (README, "Stack changes"): libjwt 1.10
 * refuses a token whose typ is at+jwt (RFC 9068 access tokens). */
static void test_at_jwt_typ(void)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef";
    const char *header = "{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", *claims = "{\"sub\":\"a\",\"exp\":1900000600}";
    char h[128], p[128], sig[64], token[512];
    h2o_base64_encode(h, header, strlen(header), 1);
    h2o_base64_encode(p, claims, strlen(claims), 1);
    char input[300];
    snprintf(input, sizeof(input), "%s.%s", h, p);
    unsigned char mac[32];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)input, strlen(input), mac, &maclen);
    h2o_base64_encode(sig, mac, maclen, 1);
    snprintf(token, sizeof(token), "%s.%s", input, sig);
    json_t *c = NULL;
    CU_ASSERT_EQUAL(verify(token, NULL, secret, &c), CMI_JWT_OK);
    json_decref(c);
    jwt_t *j = NULL;
    CU_ASSERT_EQUAL(jwt_decode(&j, token, (const unsigned char *)secret, (int)strlen(secret)), EINVAL);
    jwt_free(j);
}

static cmi_jwt_result_t judge(const cmi_jwt_policy_t *p, const char *json, int64_t now)
{
    json_t *c = json_loads(json, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    const char *why = NULL;
    cmi_jwt_result_t rc = cmi_jwt_check_claims(p, c, now, &why);
    json_decref(c);
    return rc;
}

static void test_claims_policy(void)
{
    cmi_arena_t *arena = cmi_arena_create(1024);
    cmi_regex_t iss, aud;
    const char *err;
    CU_ASSERT_EQUAL_FATAL(cmi_regex_compile(arena, &iss, "https://idp\\.example\\.com", &err), 0);
    CU_ASSERT_EQUAL_FATAL(cmi_regex_compile(arena, &aud, "orders|billing", &err), 0);
    cmi_jwt_claim_rule_t custom = {.name = "role"};
    CU_ASSERT_EQUAL_FATAL(cmi_regex_compile(arena, &custom.re, "admin|manager", &err), 0);
    cmi_jwt_policy_t p = {.skew = 60};
    /* exp with its skew: good until exp + skew, not at it. */
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000000}", NOW + 59), CMI_JWT_OK);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000000}", NOW + 60), CMI_JWT_CLAIMS);
    CU_ASSERT_EQUAL(judge(&p, "{\"sub\":\"x\"}", NOW), CMI_JWT_CLAIMS);              /* no exp */
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":\"1900000600\"}", NOW), CMI_JWT_CLAIMS);      /* not a number */
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600.5}", NOW), CMI_JWT_OK);            /* a fraction */
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"nbf\":1900000060}", NOW), CMI_JWT_OK);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"nbf\":1900000061}", NOW), CMI_JWT_CLAIMS);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"iat\":1900000061}", NOW), CMI_JWT_CLAIMS); /* future */
    p.max_age = 1800;
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600}", NOW), CMI_JWT_CLAIMS); /* iatClaim needs an iat */
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"iat\":1899998140}", NOW), CMI_JWT_OK);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"iat\":1899998139}", NOW), CMI_JWT_CLAIMS);
    p.max_age = 0;
    p.iss = &iss;
    p.aud = &aud;
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"iss\":\"https://idp.example.com\",\"aud\":[\"x\",\"billing\"]}",
                          NOW), CMI_JWT_OK);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"iss\":\"https://idp.example.com.evil\",\"aud\":\"orders\"}",
                          NOW), CMI_JWT_CLAIMS); /* the whole value, as Java's matches() */
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"iss\":\"https://idp.example.com\",\"aud\":\"ordersX\"}", NOW),
                    CMI_JWT_CLAIMS);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"iss\":\"https://idp.example.com\"}", NOW), CMI_JWT_CLAIMS);
    p.iss = p.aud = NULL;
    p.jti = 1;
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"jti\":\"a\"}", NOW), CMI_JWT_OK);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"jti\":\"\"}", NOW), CMI_JWT_CLAIMS);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"jti\":7}", NOW), CMI_JWT_CLAIMS);
    p.jti = 0;
    p.custom = &custom;
    p.ncustom = 1;
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"role\":\"manager\"}", NOW), CMI_JWT_OK);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600,\"role\":\"user\"}", NOW), CMI_JWT_CLAIMS);
    CU_ASSERT_EQUAL(judge(&p, "{\"exp\":1900000600}", NOW), CMI_JWT_CLAIMS);
    cmi_arena_destroy(arena);
}

static void test_scopes(void)
{
    json_t *c = json_pack("{s:s, s:[s,s]}", "scope", "orders.read  profile", "scp", "admin", "ops");
    CU_ASSERT_TRUE(cmi_jwt_has_scopes(c, "profile orders.read"));
    CU_ASSERT_TRUE(cmi_jwt_has_scopes(c, "admin"));
    CU_ASSERT_TRUE(cmi_jwt_has_scopes(c, ""));
    CU_ASSERT_FALSE(cmi_jwt_has_scopes(c, "orders"));      /* a word, not a prefix */
    CU_ASSERT_FALSE(cmi_jwt_has_scopes(c, "profile write"));
    json_decref(c);
}

static void test_keysets(void)
{
    char skip[160], err[256];
    size_t skipped = 0;
    CU_ASSERT_PTR_NULL(cmi_jwt_keyset_parse("nope", 4, &skipped, skip, sizeof(skip), err, sizeof(err)));
    CU_ASSERT_PTR_NULL(cmi_jwt_keyset_parse("{\"keys\":[]}", 11, &skipped, skip, sizeof(skip), err, sizeof(err)));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no usable key"));
    /* More keys than cmi keeps: the first CMI_JWT_MAX_KEYS, the rest counted. */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    json_t *keys = json_array();
    for (int i = 0; i < CMI_JWT_MAX_KEYS + 6; i++)
        json_array_append_new(keys, ec_jwk(ec, "P-256"));
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, 0);
    json_decref(doc);
    cmi_jwt_keyset_t *ks = cmi_jwt_keyset_parse(text, strlen(text), &skipped, skip, sizeof(skip), err, sizeof(err));
    CU_ASSERT_EQUAL(cmi_jwt_keyset_size(ks), CMI_JWT_MAX_KEYS);
    CU_ASSERT_EQUAL(skipped, 6);
    cmi_jwt_keyset_unref(cmi_jwt_keyset_ref(ks));
    cmi_jwt_keyset_unref(ks);
    free(text);
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
    CU_TestInfo jwt_tests[] = {
        {"libjwt's tokens (RS, ES, HS; 256/384/512) verify; tampered, confused or unknown-kid ones do not",
         test_libjwt_tokens_verify},
        {"typ at+jwt: cmi takes it, libjwt 1.10 refuses it", test_at_jwt_typ},
        {"claims: exp, nbf, iat with skew, max age, iss/aud whole matches, jti, custom", test_claims_policy},
        {"scopes: scope words and scp arrays", test_scopes},
        {"key sets: garbage, empty, more keys than kept", test_keysets},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {
        {"jwk", NULL, NULL, NULL, NULL, tests},
        {"jwt", NULL, NULL, NULL, NULL, jwt_tests},
        CU_SUITE_INFO_NULL,
    };
    return cu_run(suites);
}
