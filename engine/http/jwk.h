/* JSON Web Keys (RFC 7517, 7518) as OpenSSL public keys, for the JWT
 * handler: libjwt 1.10 takes PEM keys and has no JWKS of its own.  RSA
 * (n, e; 2048 to 16384 bits) and EC (crv P-256, P-384, P-521; x, y, a
 * point on the curve).  Each key fits the algorithms of its kind only
 * (RSA: RS256/384/512; EC: the ES of its curve), and a key's own "alg",
 * when it has one, narrows that to one: the token's "alg" is never what
 * decides how it is checked. */
#ifndef CMI_HTTP_JWK_H
#define CMI_HTTP_JWK_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

/* The public key of a JWK object, or NULL with a message in err (it names
 * the member at fault, never key material). */
EVP_PKEY *cmi_jwk_public_key(const json_t *jwk, char *err, size_t errlen);

/* Whether a token signed with alg may be checked with key (of the JWK
 * jwk: its "alg" member, if any, must be alg too). */
int cmi_jwk_fits(const json_t *jwk, EVP_PKEY *key, const char *alg);

#endif
