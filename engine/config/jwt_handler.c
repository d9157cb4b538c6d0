/* An API's JWT handler: its <property name value/> list into a
 * cmi_jwt_conf_t (http/jwt_auth.h; docs/configuration.md, "JWT handler"). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/compile.h"
#include "config/config.h"
#include "core/secrets.h"
#include "config/uri.h"
#include "http/jwks_fetch.h"
#include "http/jwt_conf.h"
#include "plugin/plugin.h"

#define MAX_CUSTOM 32
#define MAX_RESOURCE_SCOPES 256
#define HMAC_MIN 32 /* bytes: RFC 7518 3.2 asks a key at least as long as the hash */

/* The next item of a sep-separated list (the list is cut in place), or
 * NULL at its end. */
static char *next_item(char **cursor, char sep)
{
    char *t = *cursor;
    if (t == NULL)
        return NULL;
    char *end = strchr(t, sep);
    *cursor = end != NULL ? end + 1 : NULL;
    if (end != NULL)
        *end = '\0';
    return t;
}

/* The property's value, "env:NAME" read from the environment (the integon
 * handler's form).  NULL (reported) when the variable is not set. */
static const char *resolve(cmi_compile_t *cc, xmlNodePtr p, const char *name, const char *value)
{
    if (strncmp(value, "env:", 4) != 0)
        return value;
    const char *v = getenv(value + 4);
    if (v == NULL || *v == '\0') {
        if (cc->config->connectors->check_only)
            cmi_compile_warn(cc, p, "JWT handler property %s: environment variable %s is not set", name, value + 4);
        else
            cmi_compile_error(cc, p, "JWT handler property %s: environment variable %s is not set (an unset "
                              "check would be a check not made)", name, value + 4);
        return NULL;
    }
    return cmi_arena_strdup(cc->arena, v);
}

static int64_t seconds(cmi_compile_t *cc, xmlNodePtr p, const char *name, const char *v, int64_t min, int64_t max)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
        cmi_compile_error(cc, p, "JWT handler property %s: \"%s\" is not a number of seconds from %lld to %lld", name,
                          v, (long long)min, (long long)max);
        return min;
    }
    return n;
}

/* A switch: on or off as the handler writes them, or true/false; anything
 * else is an error (a protection left off by a typo is worse). */
static int on_off(cmi_compile_t *cc, xmlNodePtr p, const char *name, const char *v, const char *on,
                  const char *off)
{
    if (strcasecmp(v, on) == 0 || strcasecmp(v, "true") == 0)
        return 1;
    if (strcasecmp(v, off) != 0 && strcasecmp(v, "false") != 0)
        cmi_compile_error(cc, p, "JWT handler property %s: \"%s\" is neither %s nor %s", name, v, on, off);
    return 0;
}

static const cmi_regex_t *regex(cmi_compile_t *cc, xmlNodePtr p, const char *name, const char *v)
{
    cmi_regex_t *re = cmi_arena_calloc(cc->arena, 1, sizeof(*re));
    const char *err;
    if (cmi_regex_compile(cc->arena, re, v, &err) == 0)
        return re;
    cmi_compile_error(cc, p, "JWT handler property %s: \"%s\": %s", name, v, err);
    return NULL;
}

/* A JWKS file, read now: its keys are part of the configuration. */
static void read_jwks_file(cmi_compile_t *cc, xmlNodePtr p, cmi_jwt_conf_t *c, const char *path)
{
    if (c->file_keys != NULL) {
        cmi_compile_error(cc, p, "JWT handler: one JWKS file per handler (merge the key sets)");
        return;
    }
    size_t len = 0, skipped = 0;
    char err[512], skip[160];
    char *text = cmi_uri_read(cc, cmi_arena_sprintf(cc->arena, "file:%s", path), CMI_JWKS_MAX_BYTES, &len, err,
                              sizeof(err));
    cmi_jwt_keyset_t *ks = text != NULL ? cmi_jwt_keyset_parse(text, len, &skipped, skip, sizeof(skip), err,
                                                                sizeof(err))
                                        : NULL;
    if (ks == NULL) /* cmi_uri_read's reasons name the file; the key set's do not */
        cmi_compile_error(cc, p, "JWT handler: JWKS file%s%s: %s", text != NULL ? " " : "", text != NULL ? path : "",
                          err);
    free(text);
    if (ks == NULL)
        return;
    if (skipped > 0)
        cmi_compile_warn(cc, p, "JWT handler: JWKS file %s: %zu keys skipped (%s)", path, skipped, skip);
    c->file_keys = ks;
    cmi_arena_cleanup_add(cc->arena, (cmi_cleanup_fn)cmi_jwt_keyset_unref, ks);
}

/* jwksEndpoint: URLs and files, comma-separated, as the integon handler
 * takes several endpoints. */
static void endpoints(cmi_compile_t *cc, xmlNodePtr p, cmi_jwt_conf_t *c, const char *list)
{
    char *cursor = cmi_arena_strdup(cc->arena, list);
    for (char *t; (t = next_item(&cursor, ',')) != NULL;) {
        while (*t == ' ')
            t++;
        for (char *e = t + strlen(t); e > t && e[-1] == ' ';)
            *--e = '\0';
        if (strncmp(t, "http://", 7) == 0 || strncmp(t, "https://", 8) == 0) {
            const char *host = strstr(t, "//") + 2;
            size_t hostlen = strcspn(host, "/?#");
            if (memchr(host, '@', hostlen) != NULL)
                cmi_compile_error(cc, p, "JWT handler: a JWKS URL with credentials (a key set is public; the URL "
                                  "would reach the logs)");
            else if (hostlen == 0)
                cmi_compile_error(cc, p, "JWT handler: JWKS URL \"%s\" has no host", t);
            else if (c->nurls == CMI_JWT_MAX_SOURCES)
                cmi_compile_error(cc, p, "JWT handler: more than %d JWKS endpoints", CMI_JWT_MAX_SOURCES);
            else
                c->urls[c->nurls++] = t;
            if (t[4] == ':' && hostlen > 0)
                cmi_compile_warn(cc, p, "JWT handler: JWKS endpoint %s over plain http: whoever is on the path "
                                 "can serve keys that sign any token (use https)", t);
        } else if (strncmp(t, "file://", 7) == 0 || t[0] == '/') {
            read_jwks_file(cc, p, c, t[0] == '/' ? t : t + 7);
        } else if (*t != '\0') {
            cmi_compile_error(cc, p, "JWT handler: JWKS endpoint \"%s\" is not an http(s) URL or a file", t);
        }
    }
}

static void hmac_secret(cmi_compile_t *cc, xmlNodePtr p, cmi_jwt_conf_t *c, const char *v)
{
    char err[256];
    const char *secret = NULL;
    int rc = cmi_secret_resolve_ref(cc->arena, v, &secret, err, sizeof(err));
    if (rc == 0) {
        cmi_compile_error(cc, p, "JWT handler property hmacSecret: write it as {wso2:vault-lookup('alias')} (a "
                          "secret in an artifact is no secret; docs/configuration.md, \"Secrets\")");
    } else if (rc < 0) {
        if (rc == -1 && cc->config->connectors->check_only)
            cmi_compile_warn(cc, p, "JWT handler property hmacSecret: %s", err);
        else
            cmi_compile_error(cc, p, "JWT handler property hmacSecret: %s", err);
    } else if (strlen(secret) < HMAC_MIN) {
        cmi_compile_error(cc, p, "JWT handler property hmacSecret: shorter than %d bytes (RFC 7518 3.2)", HMAC_MIN);
    } else {
        c->hmac = (const unsigned char *)secret;
        c->hmac_len = strlen(secret);
    }
}

/* customClaims: "name:regex,name2:regex2". */
static void custom_claims(cmi_compile_t *cc, xmlNodePtr p, cmi_jwt_conf_t *c, const char *v)
{
    cmi_jwt_claim_rule_t *rules = cmi_arena_calloc(cc->arena, MAX_CUSTOM, sizeof(*rules));
    size_t n = 0;
    char *cursor = cmi_arena_strdup(cc->arena, v);
    for (char *t; (t = next_item(&cursor, ',')) != NULL;) {
        char *colon = strchr(t, ':');
        const char *err;
        if (colon == NULL || colon == t || n == MAX_CUSTOM) {
            cmi_compile_error(cc, p, "JWT handler property customClaims: \"%s\" is not name:regex (at most %d)", t,
                              MAX_CUSTOM);
            continue;
        }
        *colon = '\0';
        while (*t == ' ')
            t++;
        for (char *e = colon; e > t && e[-1] == ' ';)
            *--e = '\0';
        rules[n].name = t;
        if (cmi_regex_compile(cc->arena, &rules[n].re, colon + 1, &err) != 0)
            cmi_compile_error(cc, p, "JWT handler property customClaims: %s: %s", t, err);
        else
            n++;
    }
    c->policy.custom = rules;
    c->policy.ncustom = n;
}

static void resource_scope(cmi_compile_t *cc, xmlNodePtr p, cmi_jwt_conf_t *c, const char *pattern, const char *v)
{
    if (c->nresource_scopes == MAX_RESOURCE_SCOPES) {
        cmi_compile_error(cc, p, "JWT handler: more than %d scope properties", MAX_RESOURCE_SCOPES);
        return;
    }
    if (c->resource_scopes == NULL)
        c->resource_scopes = cmi_arena_calloc(cc->arena, MAX_RESOURCE_SCOPES, sizeof(cmi_jwt_resource_scopes_t));
    cmi_jwt_resource_scopes_t *r = (cmi_jwt_resource_scopes_t *)&c->resource_scopes[c->nresource_scopes++];
    r->pattern = pattern;
    r->scopes = v;
}

static void property(cmi_compile_t *cc, xmlNodePtr p, cmi_jwt_conf_t *c, const char *name, const char *v)
{
    if (strcmp(name, "jwtHeader") == 0)
        c->header = v;
    else if (strcmp(name, "jwksEndpoint") == 0)
        endpoints(cc, p, c, v);
    else if (strcmp(name, "jwksEnvVariable") == 0)
        {
        const char *list = resolve(cc, p, name, cmi_arena_sprintf(cc->arena, "env:%s", v));
        endpoints(cc, p, c, list != NULL ? list : "");
    }
    else if (strcmp(name, "jwksTimeout") == 0)
        c->ttl = seconds(cc, p, name, v, 60, 7 * 86400);
    else if (strcmp(name, "jwksRefreshTime") == 0)
        c->refresh = seconds(cc, p, name, v, 10, 86400);
    else if (strcmp(name, "jwksMinRefreshInterval") == 0)
        c->min_refresh = seconds(cc, p, name, v, 1, 3600);
    else if (strcmp(name, "jwksCaFile") == 0) {
        c->ca_file = v;
        if (access(v, R_OK) != 0)
            cmi_compile_error(cc, p, "JWT handler property jwksCaFile: %s: %s", v, strerror(errno));
    }
    else if (strcmp(name, "iatClaim") == 0)
        c->policy.max_age = seconds(cc, p, name, v, 1, 366 * 86400);
    else if (strcmp(name, "issClaim") == 0)
        c->policy.iss = regex(cc, p, name, v);
    else if (strcmp(name, "subClaim") == 0)
        c->policy.sub = regex(cc, p, name, v);
    else if (strcmp(name, "audClaim") == 0)
        c->policy.aud = regex(cc, p, name, v);
    else if (strcmp(name, "jtiClaim") == 0)
        c->policy.jti = on_off(cc, p, name, v, "enabled", "disabled");
    else if (strcmp(name, "customClaims") == 0)
        custom_claims(cc, p, c, v);
    else if (strcmp(name, "forwardToken") == 0)
        c->forward = on_off(cc, p, name, v, "true", "false");
    else if (strcmp(name, "clockSkew") == 0)
        c->policy.skew = seconds(cc, p, name, v, 0, 600);
    else if (strcmp(name, "hmacSecret") == 0)
        hmac_secret(cc, p, c, v);
    else if (strcmp(name, "scopes") == 0)
        c->scopes = v;
    else if (strncmp(name, "scopes:", 7) == 0)
        resource_scope(cc, p, c, name + 7, v);
    else
        cmi_compile_error(cc, p, "JWT handler: no property \"%s\" (docs/configuration.md, \"JWT handler\")", name);
}

/* Every scopes:PATTERN names a resource of the API. */
static void check_scopes(cmi_compile_t *cc, xmlNodePtr h, const cmi_api_t *api, const cmi_jwt_conf_t *c)
{
    for (size_t i = 0; i < c->nresource_scopes; i++) {
        int found = 0;
        for (size_t r = 0; r < api->count && !found; r++)
            found = api->resources[r]->pattern != NULL &&
                    strcmp(api->resources[r]->pattern, c->resource_scopes[i].pattern) == 0;
        if (!found)
            cmi_compile_error(cc, h, "JWT handler property scopes:%s: the API has no resource with that uri-template "
                              "or url-mapping", c->resource_scopes[i].pattern);
    }
}

void cmi_compile_jwt_handler(cmi_compile_t *cc, cmi_api_t *api, xmlNodePtr h)
{
    if (api->jwt != NULL) {
        cmi_compile_error(cc, h, "<handlers>: one JWT handler per API");
        return;
    }
    cmi_jwt_conf_t *c = cmi_arena_calloc(cc->arena, 1, sizeof(*c));
    c->header = "Authorization";
    c->ttl = 6000;    /* the integon handler's documented defaults */
    c->refresh = 3000;
    c->min_refresh = 30;
    c->policy.skew = 60;
    int unseen = 0;
    for (xmlNodePtr p = h->children; p != NULL; p = p->next) {
        if (p->type != XML_ELEMENT_NODE)
            continue;
        const char *name = cmi_xml_is(p, "property") ? cmi_xml_attr(cc, p, "name") : NULL;
        const char *value = name != NULL ? cmi_xml_attr(cc, p, "value") : NULL;
        if (name == NULL || value == NULL) {
            cmi_compile_error(cc, p, "JWT handler: expected <property name=\"...\" value=\"...\"/>");
            continue;
        }
        if (*value == '\0')
            continue; /* the integon handler's way to leave a check off */
        const char *v = resolve(cc, p, name, value);
        if (v != NULL)
            property(cc, p, c, name, v);
        /* cmi check without the environment or the secrets: keys it could
         * not see are not missing keys. */
        unseen |= v == NULL || strcmp(name, "jwksEnvVariable") == 0 || strcmp(name, "hmacSecret") == 0;
    }
    if (c->file_keys == NULL && c->nurls == 0 && c->hmac == NULL && !(unseen && cc->config->connectors->check_only))
        cmi_compile_error(cc, h, "JWT handler: no keys (jwksEndpoint, jwksEnvVariable or hmacSecret)");
    if (c->refresh > c->ttl)
        c->refresh = c->ttl;
    api->jwt = c;
    api->auth |= CMI_API_AUTH_JWT;
}

void cmi_compile_jwt_scopes(cmi_compile_t *cc, xmlNodePtr handlers, const cmi_api_t *api)
{
    if (api->jwt != NULL)
        check_scopes(cc, handlers, api, api->jwt);
}
