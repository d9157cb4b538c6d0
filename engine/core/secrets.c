#include "config.h"

#include "core/secrets.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE (1024 * 1024)
#define MAX_ALIAS 128

typedef struct {
    char *alias;
    char *value;
} secret_t;

static secret_t *secrets;
static size_t nsecrets;

void cmi_secrets_clear(void)
{
    for (size_t i = 0; i < nsecrets; i++) {
        OPENSSL_cleanse(secrets[i].value, strlen(secrets[i].value));
        free(secrets[i].alias);
        free(secrets[i].value);
    }
    free(secrets);
    secrets = NULL;
    nsecrets = 0;
}

static char *trimmed(const char *a, const char *b)
{
    while (a < b && isspace((unsigned char)*a))
        a++;
    while (b > a && isspace((unsigned char)b[-1]))
        b--;
    return strndup(a, (size_t)(b - a));
}

static int alias_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n > MAX_ALIAS)
        return 0;
    for (; *a; a++)
        if (!isalnum((unsigned char)*a) && *a != '_' && *a != '-' && *a != '.')
            return 0;
    return 1;
}

/* "alias = value" lines; '#' starts a comment line.  Errors name the line,
 * never its value. */
static int parse(const char *path, char *text, size_t len, char *err, size_t errlen)
{
    int line = 0;
    for (char *p = text, *end = text + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        line++;
        char *q = p;
        while (q < eol && isspace((unsigned char)*q))
            q++;
        if (q < eol && *q != '#') {
            char *eq = memchr(q, '=', (size_t)(eol - q));
            char *alias = eq ? trimmed(q, eq) : NULL;
            if (alias == NULL || !alias_ok(alias)) {
                snprintf(err, errlen, "%s:%d: expected 'alias = value' (an alias is letters, digits, '_', '-', '.')",
                         path, line);
                free(alias);
                return -1;
            }
            for (size_t i = 0; i < nsecrets; i++)
                if (strcmp(secrets[i].alias, alias) == 0) {
                    snprintf(err, errlen, "%s:%d: the alias '%s' is given twice", path, line, alias);
                    free(alias);
                    return -1;
                }
            secrets = realloc(secrets, (nsecrets + 1) * sizeof(*secrets));
            if (secrets == NULL)
                abort();
            secrets[nsecrets].alias = alias;
            secrets[nsecrets++].value = trimmed(eq + 1, eol);
        }
        p = nl ? nl + 1 : end;
    }
    return 0;
}

int cmi_secrets_load(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot read the secrets file: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 || st.st_size > MAX_FILE) {
        snprintf(err, errlen, !S_ISREG(st.st_mode) ? "%s: the secrets file is not a regular file"
                              : st.st_size > MAX_FILE ? "%s: the secrets file is larger than 1 MiB"
                                                      : "%s: the secrets file may be read by other users: chmod 600 it",
                 path);
        close(fd);
        return -1;
    }
    char *text = malloc((size_t)st.st_size + 1);
    ssize_t n = text ? read(fd, text, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        snprintf(err, errlen, "%s: cannot read the secrets file", path);
        free(text);
        return -1;
    }
    int rc = parse(path, text, (size_t)n, err, errlen);
    OPENSSL_cleanse(text, (size_t)n);
    free(text);
    if (rc != 0)
        cmi_secrets_clear();
    return rc;
}

static const char *from_store(const char *alias)
{
    for (size_t i = 0; i < nsecrets; i++)
        if (strcmp(secrets[i].alias, alias) == 0)
            return secrets[i].value;
    char name[sizeof("CMI_SECRET_") + MAX_ALIAS];
    snprintf(name, sizeof(name), "CMI_SECRET_%s", alias);
    return getenv(name);
}

/* /run/secrets/<alias>: Docker's and Kubernetes' secret files. */
static const char *from_file(cmi_arena_t *arena, const char *alias, char *err, size_t errlen)
{
    char path[sizeof("/run/secrets/") + MAX_ALIAS];
    snprintf(path, sizeof(path), "/run/secrets/%s", alias);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[8192];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (len == sizeof(buf) || memchr(buf, '\0', len) != NULL) {
        snprintf(err, errlen, "%s is larger than 8 KiB or holds a NUL byte", path);
        return NULL;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    const char *v = cmi_arena_strndup(arena, buf, len);
    OPENSSL_cleanse(buf, sizeof(buf));
    return v;
}

int cmi_secret_lookup(cmi_arena_t *arena, const char *alias, const char *type, const char *encrypted,
                      const char **out, char *err, size_t errlen)
{
    if (!alias_ok(alias)) {
        snprintf(err, errlen, "'%.*s' is not a secret alias (letters, digits, '_', '-', '.')", MAX_ALIAS, alias);
        return -1;
    }
    if (encrypted != NULL && strcasecmp(encrypted, "false") != 0) {
        snprintf(err, errlen, "secret '%s': encrypted values (MI's cipher tool) are not supported: cmi keeps "
                 "secrets in a file only its user can read", alias);
        return -1;
    }
    const char *v = NULL;
    if (type == NULL || strcasecmp(type, "REG") == 0) {
        v = from_store(alias);
        if (v == NULL)
            snprintf(err, errlen, "no secret '%s' (not in the secrets file, and CMI_SECRET_%s is not set)", alias,
                     alias);
    } else if (strcasecmp(type, "ENV") == 0) {
        v = getenv(alias);
        if (v == NULL)
            snprintf(err, errlen, "secret '%s': the environment variable %s is not set", alias, alias);
    } else if (strcasecmp(type, "FILE") == 0 || strcasecmp(type, "DOCKER") == 0) {
        v = from_file(arena, alias, err, errlen);
    } else {
        snprintf(err, errlen, "secret '%s': unknown type '%s' (REG, ENV, FILE or DOCKER)", alias, type);
    }
    if (v == NULL)
        return -1;
    *out = cmi_arena_strdup(arena, v);
    return 0;
}

/* 'text' at *p (spaces around it skipped): its content in buf.  0 or -1. */
static int quoted(const char **p, char *buf, size_t size)
{
    const char *s = *p;
    while (*s == ' ')
        s++;
    if (*s != '\'')
        return -1;
    const char *e = strchr(s + 1, '\'');
    if (e == NULL || (size_t)(e - s - 1) >= size)
        return -1;
    memcpy(buf, s + 1, (size_t)(e - s - 1));
    buf[e - s - 1] = '\0';
    for (s = e + 1; *s == ' '; s++)
        ;
    *p = s;
    return 0;
}

int cmi_secret_is_ref(const char *text)
{
    return strncmp(text, "{wso2:vault-lookup(", 19) == 0 || strncmp(text, "{${wso2-vault(", 14) == 0;
}

int cmi_secret_resolve_ref(cmi_arena_t *arena, const char *text, const char **out, char *err, size_t errlen)
{
    static const char xpath[] = "{wso2:vault-lookup(", expr[] = "{${wso2-vault(";
    const char *p;
    if (strncmp(text, xpath, sizeof(xpath) - 1) == 0)
        p = text + sizeof(xpath) - 1;
    else if (strncmp(text, expr, sizeof(expr) - 1) == 0)
        p = text + sizeof(expr) - 1;
    else
        return 0;
    int synapse = text[1] == '$';
    char alias[MAX_ALIAS + 2], type[16], enc[16];
    int three = 0;
    if (quoted(&p, alias, sizeof(alias)) != 0)
        goto bad;
    if (!synapse && *p == ',') {
        p++;
        if (quoted(&p, type, sizeof(type)) != 0 || *p++ != ',' || quoted(&p, enc, sizeof(enc)) != 0)
            goto bad;
        three = 1;
    }
    if (strcmp(p, synapse ? ")}}" : ")}") != 0)
        goto bad;
    return cmi_secret_lookup(arena, alias, three ? type : NULL, three ? enc : NULL, out, err, errlen) == 0 ? 1 : -1;
bad:
    snprintf(err, errlen, "a malformed secret reference (write {wso2:vault-lookup('alias')} or "
             "{${wso2-vault('alias')}})");
    return -2;
}
