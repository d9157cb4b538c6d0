#include "config.h"

#include "http/jwk.h"

#include <h2o.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <string.h>

#define RSA_MIN_BITS 2048 /* RFC 7518 3.3 */
#define RSA_MAX_BITS 16384
#define MEMBER_MAX 4096 /* base64url of a 16384-bit modulus is 2,731 characters */

/* A base64url member of the JWK, decoded (free() it), or NULL. */
static unsigned char *member(const json_t *jwk, const char *name, size_t *len, char *err, size_t errlen)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    size_t n = s != NULL ? strlen(s) : 0;
    if (s == NULL || n == 0 || n > MEMBER_MAX) {
        snprintf(err, errlen, "the key's \"%s\" is %s", name, s == NULL ? "missing or not a string" : "empty or too long");
        return NULL;
    }
    h2o_iovec_t v = h2o_decode_base64url(NULL, s, n);
    if (v.base == NULL) {
        snprintf(err, errlen, "the key's \"%s\" is not base64url", name);
        return NULL;
    }
    *len = v.len;
    return (unsigned char *)v.base;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *b, char *err, size_t errlen)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *key = NULL;
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        snprintf(err, errlen, "OpenSSL refuses the %s key", type);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return key;
}

static EVP_PKEY *rsa_key(const json_t *jwk, char *err, size_t errlen)
{
    size_t nlen = 0, elen = 0;
    unsigned char *n = member(jwk, "n", &nlen, err, errlen);
    unsigned char *e = n != NULL ? member(jwk, "e", &elen, err, errlen) : NULL;
    EVP_PKEY *key = NULL;
    BIGNUM *bn = e != NULL ? BN_bin2bn(n, (int)nlen, NULL) : NULL, *be = e != NULL ? BN_bin2bn(e, (int)elen, NULL) : NULL;
    if (bn != NULL && be != NULL) {
        int bits = BN_num_bits(bn);
        if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
            snprintf(err, errlen, "an RSA key of %d bits (cmi takes %d to %d)", bits, RSA_MIN_BITS, RSA_MAX_BITS);
        else if (!BN_is_odd(be) || BN_is_one(be) || BN_num_bits(be) > 64)
            snprintf(err, errlen, "the key's \"e\" is not a usable RSA exponent");
        else {
            OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
            if (b != NULL && OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) &&
                OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be))
                key = from_params("RSA", b, err, errlen);
            OSSL_PARAM_BLD_free(b);
        }
    }
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    return key;
}

static const struct curve {
    const char *crv, *group, *alg;
    size_t bytes;
} curves[] = {
    {"P-256", "prime256v1", "ES256", 32},
    {"P-384", "secp384r1", "ES384", 48},
    {"P-521", "secp521r1", "ES512", 66},
};

static const struct curve *curve_of(const char *crv)
{
    for (size_t i = 0; crv != NULL && i < sizeof(curves) / sizeof(curves[0]); i++)
        if (strcmp(crv, curves[i].crv) == 0)
            return &curves[i];
    return NULL;
}

/* The point as an uncompressed octet string (0x04 || x || y), checked to
 * be on the curve (an invalid point is the invalid-curve attack's way in). */
static EVP_PKEY *ec_key(const json_t *jwk, char *err, size_t errlen)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const struct curve *c = curve_of(crv);
    if (c == NULL) {
        snprintf(err, errlen, "the key's \"crv\" is not P-256, P-384 or P-521");
        return NULL;
    }
    size_t xlen = 0, ylen = 0;
    unsigned char *x = member(jwk, "x", &xlen, err, errlen);
    unsigned char *y = x != NULL ? member(jwk, "y", &ylen, err, errlen) : NULL;
    EVP_PKEY *key = NULL;
    if (y != NULL && (xlen != c->bytes || ylen != c->bytes)) {
        snprintf(err, errlen, "the key's \"x\" and \"y\" must be %zu bytes each for %s", c->bytes, c->crv);
    } else if (y != NULL) {
        unsigned char point[1 + 2 * 66];
        point[0] = 0x04;
        memcpy(point + 1, x, xlen);
        memcpy(point + 1 + xlen, y, ylen);
        OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
        if (b != NULL && OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, c->group, 0) &&
            OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + xlen + ylen))
            key = from_params("EC", b, err, errlen);
        OSSL_PARAM_BLD_free(b);
        /* OpenSSL 3 refuses a point off the curve when it builds the key;
         * the check says so again whatever the version does. */
        EVP_PKEY_CTX *check = key != NULL ? EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL) : NULL;
        if (key == NULL || check == NULL || EVP_PKEY_public_check(check) != 1) {
            snprintf(err, errlen, "the key's point is not on %s", c->crv);
            EVP_PKEY_free(key);
            key = NULL;
        }
        EVP_PKEY_CTX_free(check);
    }
    free(x);
    free(y);
    return key;
}

EVP_PKEY *cmi_jwk_public_key(const json_t *jwk, char *err, size_t errlen)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    if (!json_is_object(jwk) || kty == NULL) {
        snprintf(err, errlen, "not a JSON Web Key (no \"kty\")");
        return NULL;
    }
    if (json_object_get(jwk, "d") != NULL || json_object_get(jwk, "p") != NULL) {
        snprintf(err, errlen, "a private key: publish only the public part");
        return NULL;
    }
    const char *use = json_string_value(json_object_get(jwk, "use"));
    if (use != NULL && strcmp(use, "sig") != 0) {
        snprintf(err, errlen, "a key for \"%s\", not for signatures", use);
        return NULL;
    }
    if (strcmp(kty, "RSA") == 0)
        return rsa_key(jwk, err, errlen);
    if (strcmp(kty, "EC") == 0)
        return ec_key(jwk, err, errlen);
    snprintf(err, errlen, "key type \"%.16s\" (cmi takes RSA and EC keys from a JWKS)", kty);
    return NULL;
}

int cmi_jwk_fits(const json_t *jwk, EVP_PKEY *key, const char *alg)
{
    const char *own = json_string_value(json_object_get(jwk, "alg"));
    if (alg == NULL || (own != NULL && strcmp(own, alg) != 0))
        return 0;
    if (EVP_PKEY_is_a(key, "RSA"))
        return strcmp(alg, "RS256") == 0 || strcmp(alg, "RS384") == 0 || strcmp(alg, "RS512") == 0;
    if (EVP_PKEY_is_a(key, "EC")) {
        const struct curve *c = curve_of(json_string_value(json_object_get(jwk, "crv")));
        return c != NULL && strcmp(alg, c->alg) == 0;
    }
    return 0;
}
