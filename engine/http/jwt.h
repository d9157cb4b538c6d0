/* JSON Web Tokens (RFC 7519) in JWS compact form: the signature checked
 * against keys cmi chose, then the claims against a policy.
 *
 * How a token is checked is decided by the key, never by the token: the
 * token's "alg" must be one its key fits (jwk.h), "none" and unknown
 * algorithms are refused, a header with "crit" is refused (cmi
 * understands no extension), keys a token carries or points at ("jwk",
 * "jku", "x5u", "x5c") are ignored.  Any "typ" is accepted ("JWT",
 * "at+jwt", none).
 *
 * The signature is checked with OpenSSL's EVP interface rather than
 * libjwt 1.10's jwt_decode: that one refuses every "typ" but "JWT",
 * compares HMACs with strcmp (a timing oracle), and parses the PEM key
 * again on every call (README, "Stack changes").  libjwt signs the unit
 * test's tokens, as an implementation independent of this one. */
#ifndef CMI_HTTP_JWT_H
#define CMI_HTTP_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/regex.h"

#define CMI_JWT_MAX_TOKEN 8192 /* bytes of the compact form */
#define CMI_JWT_MAX_KEYS 64    /* keys kept from one key set */

/* An immutable set of public keys, shared between threads by reference. */
typedef struct cmi_jwt_keyset cmi_jwt_keyset_t;

/* The usable keys of a JWKS document ({"keys": [...]}, or one JWK).  Keys
 * cmi cannot use are skipped: *skipped counts them and skip_why says why
 * the first was.  NULL with err when the document is not a key set or has
 * no usable key. */
cmi_jwt_keyset_t *cmi_jwt_keyset_parse(const char *text, size_t len, size_t *skipped, char *skip_why,
                                       size_t skip_len, char *err, size_t errlen);
size_t cmi_jwt_keyset_size(const cmi_jwt_keyset_t *ks);
cmi_jwt_keyset_t *cmi_jwt_keyset_ref(cmi_jwt_keyset_t *ks);
void cmi_jwt_keyset_unref(cmi_jwt_keyset_t *ks);

/* What a token may be checked with. */
typedef struct {
    const cmi_jwt_keyset_t *const *sets; /* RS and ES keys: nsets key sets */
    size_t nsets;
    const unsigned char *hmac;    /* the HS secret, or NULL */
    size_t hmac_len;
} cmi_jwt_keys_t;

typedef enum {
    CMI_JWT_OK = 0,
    CMI_JWT_MALFORMED,   /* not a JWS compact token cmi reads */
    CMI_JWT_ALG,         /* alg none, unknown, or not one the key fits */
    CMI_JWT_UNKNOWN_KID, /* no key with the token's kid (a key set refresh may bring it) */
    CMI_JWT_SIGNATURE,   /* the signature does not verify */
    CMI_JWT_CLAIMS       /* the claims do not satisfy the policy */
} cmi_jwt_result_t;

/* Checks token's signature; on success the claims (a new reference) in
 * *claims.  *why: a short reason for a log line or an answer (static). */
cmi_jwt_result_t cmi_jwt_verify(const char *token, size_t len, const cmi_jwt_keys_t *keys, json_t **claims,
                                const char **why);

typedef struct {
    const char *name;
    cmi_regex_t re;
} cmi_jwt_claim_rule_t;

/* What the claims must satisfy (NULL and 0: not checked).  exp is always
 * required. */
typedef struct {
    int64_t skew;    /* seconds of clock skew allowed on exp, nbf and iat */
    int64_t max_age; /* iat no older than this many seconds (iatClaim) */
    const cmi_regex_t *iss, *sub, *aud; /* whole-value matches; aud: any of its values */
    int jti;                            /* a jti is required (the caller keeps the replay cache) */
    const cmi_jwt_claim_rule_t *custom; /* customClaims: each claim present, its text matching */
    size_t ncustom;
} cmi_jwt_policy_t;

cmi_jwt_result_t cmi_jwt_check_claims(const cmi_jwt_policy_t *p, const json_t *claims, int64_t now, const char **why);

/* Whether claims grant every scope of the space-separated list scopes
 * (the "scope" claim, space-separated, or "scp", an array or a string). */
int cmi_jwt_has_scopes(const json_t *claims, const char *scopes);

#endif
