#include "config.h"

#include "http/jwt.h"

#include <h2o.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "http/jwk.h"

#define HEADER_MAX 2048 /* base64url characters of the header */
#define TRIES_MAX 8     /* signature checks a token may cost (keys without a kid, or sharing one) */
#define JTI_MAX 256

typedef struct {
    const char *kid; /* NULL when the JWK has none */
    EVP_PKEY *pkey;
    json_t *jwk; /* for its "alg" (cmi_jwk_fits) */
} jwt_key_t;

struct cmi_jwt_keyset {
    atomic_int refs;
    size_t n;
    jwt_key_t keys[];
};

enum kind { HS, RS, ES };

static const struct alg {
    const char *name;
    enum kind kind;
    const char *md;
    size_t es_len; /* ES: bytes of r and of s */
} algs[] = {
    {"HS256", HS, "SHA256", 0},  {"HS384", HS, "SHA384", 0},  {"HS512", HS, "SHA512", 0},
    {"RS256", RS, "SHA256", 0},  {"RS384", RS, "SHA384", 0},  {"RS512", RS, "SHA512", 0},
    {"ES256", ES, "SHA256", 32}, {"ES384", ES, "SHA384", 48}, {"ES512", ES, "SHA512", 66},
};

static const struct alg *alg_named(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(algs[i].name, name) == 0)
            return &algs[i];
    return NULL;
}

/* --- key sets ------------------------------------------------------------ */

static void keyset_free(cmi_jwt_keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        EVP_PKEY_free(ks->keys[i].pkey);
        json_decref(ks->keys[i].jwk);
    }
    free(ks);
}

cmi_jwt_keyset_t *cmi_jwt_keyset_parse(const char *text, size_t len, size_t *skipped, char *skip_why,
                                       size_t skip_len, char *err, size_t errlen)
{
    *skipped = 0;
    skip_why[0] = '\0';
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL || !json_is_object(doc)) {
        snprintf(err, errlen, "not a JSON object%s%s", doc == NULL ? ": " : "", doc == NULL ? je.text : "");
        json_decref(doc);
        return NULL;
    }
    json_t *list = json_object_get(doc, "keys");
    int single = list == NULL && json_object_get(doc, "kty") != NULL;
    if (!single && !json_is_array(list)) {
        snprintf(err, errlen, "no \"keys\" array");
        json_decref(doc);
        return NULL;
    }
    size_t total = single ? 1 : json_array_size(list);
    size_t cap = total < CMI_JWT_MAX_KEYS ? total : CMI_JWT_MAX_KEYS;
    cmi_jwt_keyset_t *ks = cmi_xcalloc(1, sizeof(*ks) + cap * sizeof(jwt_key_t));
    atomic_init(&ks->refs, 1);
    for (size_t i = 0; i < total; i++) {
        json_t *jwk = single ? doc : json_array_get(list, i);
        char why[160];
        EVP_PKEY *pkey = ks->n < cap ? cmi_jwk_public_key(jwk, why, sizeof(why)) : NULL;
        if (ks->n >= cap)
            snprintf(why, sizeof(why), "more than %d keys", CMI_JWT_MAX_KEYS);
        if (pkey == NULL) {
            if ((*skipped)++ == 0)
                snprintf(skip_why, skip_len, "key %zu: %s", i, why);
            continue;
        }
        jwt_key_t *k = &ks->keys[ks->n++];
        k->pkey = pkey;
        k->jwk = json_incref(jwk);
        k->kid = json_string_value(json_object_get(jwk, "kid"));
    }
    json_decref(doc); /* the keys hold their JWKs (and so their kid strings) */
    if (ks->n == 0) {
        snprintf(err, errlen, "no usable key (%s)", skip_why[0] ? skip_why : "the set is empty");
        keyset_free(ks);
        return NULL;
    }
    return ks;
}

size_t cmi_jwt_keyset_size(const cmi_jwt_keyset_t *ks)
{
    return ks != NULL ? ks->n : 0;
}

cmi_jwt_keyset_t *cmi_jwt_keyset_ref(cmi_jwt_keyset_t *ks)
{
    if (ks != NULL)
        atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

void cmi_jwt_keyset_unref(cmi_jwt_keyset_t *ks)
{
    if (ks != NULL && atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) == 1)
        keyset_free(ks);
}

/* --- signatures -------------------------------------------------------- */

/* Whether s is base64url as RFC 7515 writes it: its alphabet only, no
 * padding, and the unused bits of the last character zero (so that a
 * token has one spelling: h2o's decoder also takes '+', '/' and stray
 * bits). */
static int canonical_base64url(const char *s, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (n == 0 || n % 4 == 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || strchr(alphabet, s[i]) == NULL)
            return 0;
    unsigned last = (unsigned)(strchr(alphabet, s[n - 1]) - alphabet);
    return n % 4 == 0 || (last & (n % 4 == 2 ? 0x0fu : 0x03u)) == 0;
}

/* A base64url segment decoded (free() it), or NULL. */
static unsigned char *segment(const char *s, size_t n, size_t *len)
{
    if (!canonical_base64url(s, n))
        return NULL;
    h2o_iovec_t v = h2o_decode_base64url(NULL, s, n);
    *len = v.len;
    return (unsigned char *)v.base;
}

static int check_hmac(const struct alg *a, const cmi_jwt_keys_t *keys, const char *input, size_t inlen,
                      const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    EVP_MD *md = EVP_MD_fetch(NULL, a->md, NULL);
    int ok = md != NULL && HMAC(md, keys->hmac, (int)keys->hmac_len, (const unsigned char *)input, inlen, mac,
                                &maclen) != NULL &&
             maclen == siglen && CRYPTO_memcmp(mac, sig, siglen) == 0;
    EVP_MD_free(md);
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

/* JWS writes an ECDSA signature as r || s, each of the curve's size;
 * OpenSSL reads DER. */
static unsigned char *es_to_der(const struct alg *a, const unsigned char *sig, size_t siglen, size_t *derlen)
{
    if (siglen != 2 * a->es_len)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)a->es_len, NULL), *s = BN_bin2bn(sig + a->es_len, (int)a->es_len, NULL);
    unsigned char *der = NULL;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        int n = i2d_ECDSA_SIG(es, &der);
        *derlen = n > 0 ? (size_t)n : 0;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return der;
}

static int check_pkey(const struct alg *a, EVP_PKEY *pkey, const char *input, size_t inlen, const unsigned char *sig,
                      size_t siglen)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    if (a->kind == ES && (der = es_to_der(a, sig, siglen, &derlen)) == NULL)
        return 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit_ex(ctx, NULL, a->md, NULL, NULL, pkey, NULL) == 1 &&
             EVP_DigestVerify(ctx, der != NULL ? der : sig, der != NULL ? derlen : siglen,
                              (const unsigned char *)input, inlen) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

/* The keys the token's kid and alg allow, tried in order (a key set of
 * CMI_JWT_MAX_KEYS at most each). */
static cmi_jwt_result_t check_signature(const struct alg *a, const char *kid, const cmi_jwt_keys_t *keys,
                                        const char *input, size_t inlen, const unsigned char *sig, size_t siglen,
                                        const char **why)
{
    if (a->kind == HS) {
        if (keys->hmac == NULL) {
            *why = "an HMAC algorithm, and the handler has no HMAC secret";
            return CMI_JWT_ALG;
        }
        *why = "the signature does not verify";
        return check_hmac(a, keys, input, inlen, sig, siglen) ? CMI_JWT_OK : CMI_JWT_SIGNATURE;
    }
    int named = 0, fitting = 0, tries = 0;
    for (size_t j = 0; j < keys->nsets && tries < TRIES_MAX; j++) {
        const cmi_jwt_keyset_t *ks = keys->sets[j];
        for (size_t i = 0; ks != NULL && i < ks->n && tries < TRIES_MAX; i++) {
            const jwt_key_t *k = &ks->keys[i];
            if (kid != NULL && (k->kid == NULL || strcmp(k->kid, kid) != 0))
                continue;
            named = 1;
            if (!cmi_jwk_fits(k->jwk, k->pkey, a->name))
                continue;
            fitting = 1;
            tries++;
            if (check_pkey(a, k->pkey, input, inlen, sig, siglen))
                return CMI_JWT_OK;
        }
    }
    if (!named && kid != NULL) {
        *why = "no key has the token's kid";
        return CMI_JWT_UNKNOWN_KID;
    }
    if (!fitting) {
        *why = "the token's algorithm does not fit its key";
        return CMI_JWT_ALG;
    }
    *why = "the signature does not verify";
    return CMI_JWT_SIGNATURE;
}

static json_t *decode_object(const char *s, size_t n)
{
    size_t len = 0;
    unsigned char *raw = segment(s, n, &len);
    json_t *j = raw != NULL ? json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(raw);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static cmi_jwt_result_t check_header(const json_t *h, const struct alg **a, const char **why)
{
    const char *name = json_string_value(json_object_get(h, "alg"));
    if (name == NULL) {
        *why = "the header has no alg";
        return CMI_JWT_MALFORMED;
    }
    if ((*a = alg_named(name)) == NULL) {
        *why = strcmp(name, "none") == 0 ? "alg none" : "an algorithm cmi does not take";
        return CMI_JWT_ALG;
    }
    if (json_object_get(h, "crit") != NULL) {
        *why = "the header has crit extensions";
        return CMI_JWT_MALFORMED;
    }
    json_t *kid = json_object_get(h, "kid");
    if (kid != NULL && !json_is_string(kid)) {
        *why = "the header's kid is not a string";
        return CMI_JWT_MALFORMED;
    }
    return CMI_JWT_OK;
}

cmi_jwt_result_t cmi_jwt_verify(const char *token, size_t len, const cmi_jwt_keys_t *keys, json_t **claims,
                                const char **why)
{
    *claims = NULL;
    const char *d1 = len <= CMI_JWT_MAX_TOKEN ? memchr(token, '.', len) : NULL;
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL ||
        (size_t)(d1 - token) > HEADER_MAX) {
        *why = len > CMI_JWT_MAX_TOKEN ? "the token is too large" : "not a signed JWT (header.payload.signature)";
        return CMI_JWT_MALFORMED;
    }
    json_t *header = decode_object(token, (size_t)(d1 - token));
    if (header == NULL) {
        *why = "the header is not base64url JSON";
        return CMI_JWT_MALFORMED;
    }
    const struct alg *a = NULL;
    cmi_jwt_result_t rc = check_header(header, &a, why);
    size_t siglen = 0;
    unsigned char *sig = NULL;
    if (rc == CMI_JWT_OK && (sig = segment(d2 + 1, len - (size_t)(d2 + 1 - token), &siglen)) == NULL) {
        *why = "the signature is not base64url";
        rc = CMI_JWT_MALFORMED;
    }
    if (rc == CMI_JWT_OK)
        rc = check_signature(a, json_string_value(json_object_get(header, "kid")), keys, token,
                             (size_t)(d2 - token), sig, siglen, why);
    free(sig);
    json_decref(header);
    if (rc != CMI_JWT_OK)
        return rc;
    *claims = decode_object(d1 + 1, (size_t)(d2 - d1 - 1));
    if (*claims == NULL) {
        *why = "the payload is not base64url JSON";
        return CMI_JWT_MALFORMED;
    }
    return CMI_JWT_OK;
}

/* --- claims ------------------------------------------------------------- */

/* A NumericDate claim: 1 with its whole seconds, 0 when absent, -1 when
 * not a number. */
static int numeric_date(const json_t *claims, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(claims, name);
    if (v == NULL)
        return 0;
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (!(d > -9e15 && d < 9e15))
        return -1;
    *out = (int64_t)d;
    return 1;
}

static cmi_jwt_result_t refuse(const char **why, const char *reason)
{
    *why = reason;
    return CMI_JWT_CLAIMS;
}

static int text_matches(const cmi_regex_t *re, const json_t *v)
{
    const char *s = json_string_value(v);
    return s != NULL && cmi_regex_matches(re, s, json_string_length(v));
}

static int audience_matches(const cmi_regex_t *re, const json_t *aud)
{
    if (!json_is_array(aud))
        return text_matches(re, aud);
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v) if (text_matches(re, v)) return 1;
    return 0;
}

/* A custom claim as Java's toString() writes it: strings as they are,
 * other values as JSON. */
static int custom_matches(const cmi_jwt_claim_rule_t *r, const json_t *v)
{
    if (json_is_string(v))
        return text_matches(&r->re, v);
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int ok = text != NULL && cmi_regex_matches(&r->re, text, strlen(text));
    free(text);
    return ok;
}

static cmi_jwt_result_t check_times(const cmi_jwt_policy_t *p, const json_t *claims, int64_t now, const char **why)
{
    int64_t exp = 0, nbf = 0, iat = 0;
    int has_exp = numeric_date(claims, "exp", &exp), has_nbf = numeric_date(claims, "nbf", &nbf),
        has_iat = numeric_date(claims, "iat", &iat);
    if (has_exp < 0 || has_nbf < 0 || has_iat < 0)
        return refuse(why, "exp, nbf or iat is not a number");
    if (has_exp == 0)
        return refuse(why, "the token has no exp");
    if (now >= exp + p->skew)
        return refuse(why, "the token has expired");
    if (has_nbf && now + p->skew < nbf)
        return refuse(why, "the token is not valid yet (nbf)");
    if (has_iat && iat > now + p->skew)
        return refuse(why, "the token was issued in the future (iat)");
    if (p->max_age > 0 && !has_iat)
        return refuse(why, "the token has no iat");
    if (p->max_age > 0 && now - iat > p->max_age + p->skew)
        return refuse(why, "the token is too old (iat)");
    return CMI_JWT_OK;
}

cmi_jwt_result_t cmi_jwt_check_claims(const cmi_jwt_policy_t *p, const json_t *claims, int64_t now, const char **why)
{
    cmi_jwt_result_t rc = check_times(p, claims, now, why);
    if (rc != CMI_JWT_OK)
        return rc;
    if (p->iss != NULL && !text_matches(p->iss, json_object_get(claims, "iss")))
        return refuse(why, "the issuer does not match");
    if (p->sub != NULL && !text_matches(p->sub, json_object_get(claims, "sub")))
        return refuse(why, "the subject does not match");
    if (p->aud != NULL && !audience_matches(p->aud, json_object_get(claims, "aud")))
        return refuse(why, "the audience does not match");
    if (p->jti) {
        const json_t *jti = json_object_get(claims, "jti");
        if (!json_is_string(jti) || json_string_length(jti) == 0 || json_string_length(jti) > JTI_MAX)
            return refuse(why, "the token has no usable jti");
    }
    for (size_t i = 0; i < p->ncustom; i++) {
        const json_t *v = json_object_get(claims, p->custom[i].name);
        if (v == NULL || !custom_matches(&p->custom[i], v))
            return refuse(why, "a required claim is missing or does not match");
    }
    return CMI_JWT_OK;
}

/* Whether the space-separated list has word. */
static int has_word(const char *list, size_t n, const char *word, size_t wlen)
{
    for (size_t i = 0; i < n;) {
        while (i < n && list[i] == ' ')
            i++;
        size_t j = i;
        while (j < n && list[j] != ' ')
            j++;
        if (j - i == wlen && memcmp(list + i, word, wlen) == 0)
            return 1;
        i = j;
    }
    return 0;
}

static int granted(const json_t *claims, const char *word, size_t wlen)
{
    const json_t *scope = json_object_get(claims, "scope"), *scp = json_object_get(claims, "scp");
    if (json_is_string(scope) && has_word(json_string_value(scope), json_string_length(scope), word, wlen))
        return 1;
    if (json_is_string(scp))
        return has_word(json_string_value(scp), json_string_length(scp), word, wlen);
    size_t i;
    json_t *v;
    json_array_foreach(scp, i, v) if (json_is_string(v) && json_string_length(v) == wlen &&
                                      memcmp(json_string_value(v), word, wlen) == 0) return 1;
    return 0;
}

int cmi_jwt_has_scopes(const json_t *claims, const char *scopes)
{
    for (const char *s = scopes; *s != '\0';) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n > 0 && !granted(claims, s, n))
            return 0;
        s += n;
    }
    return 1;
}
