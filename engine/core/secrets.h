/* cmi's secret store, for MI's secure vault lookups (docs/configuration.md,
 * "Secrets"): wso2:vault-lookup('alias') in XPath, ${wso2-vault('alias')}
 * in Synapse expressions, and {wso2:vault-lookup('alias')} as the whole
 * value of a connector's secret parameter or of the HTTPS password.
 *
 * An alias is looked up in the secrets file (alias = value lines, readable
 * by cmi's user only), then in the environment as CMI_SECRET_<alias>.
 * MI's three-argument form reads where it names: 'ENV' an environment
 * variable, 'FILE' or 'DOCKER' /run/secrets/<alias>, 'REG' the store;
 * MI's encrypted values ('true') are refused (cmi has no cipher tool: the
 * file's permissions protect it).  The store is read once at start, before
 * any thread, and only read afterwards. */
#ifndef CMI_CORE_SECRETS_H
#define CMI_CORE_SECRETS_H

#include <stddef.h>

#include "core/arena.h"

/* Reads the secrets file.  Returns 0, or -1 with a message in err (a file
 * others can read is refused). */
int cmi_secrets_load(const char *path, char *err, size_t errlen);
/* Forgets every secret (wiped). */
void cmi_secrets_clear(void);

/* MI's lookup: type NULL or "REG" for the store; "ENV", "FILE", "DOCKER";
 * encrypted NULL or "false".  The value (arena copy) in *out, or -1 with a
 * message in err that never holds a value. */
int cmi_secret_lookup(cmi_arena_t *arena, const char *alias, const char *type, const char *encrypted,
                      const char **out, char *err, size_t errlen);

/* Whether text starts as a secret reference does (then it is one, or an
 * error: never a dynamic value). */
int cmi_secret_is_ref(const char *text);

/* When text is, as a whole, {wso2:vault-lookup('alias'[, 'TYPE', 'false'])}
 * or {${wso2-vault('alias')}}: its value in *out and 1, or -1 with err
 * (-2: the reference itself is malformed).  0 when it is not one. */
int cmi_secret_resolve_ref(cmi_arena_t *arena, const char *text, const char **out, char *err, size_t errlen);

#endif
