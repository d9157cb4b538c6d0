/* Loading connector modules: dlopen, the ABI check, and a validation of the
 * descriptor's tables, so that a broken module is refused with a message at
 * start-up instead of misbehaving on the first message. */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "plugin/plugin.h"
#include "runtime/errors.h"

#ifndef CMI_CONNECTORS_DIR
#define CMI_CONNECTORS_DIR "/usr/local/lib/cmi/connectors"
#endif

/* The fields of cmi_connector_t that ABI 1.0 has, up to and including
 * shutdown: a module must be at least this big. */
#define DESC_MIN_SIZE (offsetof(cmi_connector_t, shutdown) + sizeof(((cmi_connector_t *)0)->shutdown))

static int valid_name(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              (*p == '-' && p != s)))
            return 0;
    return 1;
}

static int check_ops(const cmi_connector_t *d, char *err, size_t n)
{
    if (d->ops == NULL) {
        snprintf(err, n, "the descriptor has no operation table");
        return -1;
    }
    for (const cmi_op_def_t *op = d->ops; op->name != NULL; op++) {
        if (!valid_name(op->name) || op->run == NULL) {
            snprintf(err, n, "operation '%s' has a bad name or no run function", op->name);
            return -1;
        }
        if (strcmp(op->name, "init") == 0) {
            snprintf(err, n, "'init' is the connection config, not an operation name");
            return -1;
        }
        for (const cmi_op_def_t *o2 = d->ops; o2 != op; o2++)
            if (strcmp(o2->name, op->name) == 0) {
                snprintf(err, n, "operation '%s' is declared twice", op->name);
                return -1;
            }
        if ((op->flags & CMI_OP_NEEDS_CONFIG) && d->config == NULL) {
            snprintf(err, n, "operation '%s' needs a connection config, but the connector declares none", op->name);
            return -1;
        }
        char why[256];
        if (cmi_params_table_check(op->params, op->params_size, why, sizeof(why)) != 0) {
            snprintf(err, n, "operation '%s': %s", op->name, why);
            return -1;
        }
    }
    return 0;
}

static int check_listeners(const cmi_connector_t *d, char *err, size_t n)
{
    if (d->listeners == NULL)
        return 0;
    for (const cmi_listener_def_t *l = d->listeners; l->classes != NULL; l++) {
        if ((l->classes[0] == NULL && l->protocol == NULL) || l->start == NULL || l->done == NULL) {
            snprintf(err, n, "a listener has no class name or protocol, start or done function");
            return -1;
        }
        char why[256];
        if (cmi_params_table_check(l->params, l->params_size, why, sizeof(why)) != 0) {
            snprintf(err, n, "listener '%s': %s", l->classes[0] ? l->classes[0] : l->protocol, why);
            return -1;
        }
    }
    return 0;
}

/* Everything the engine relies on, checked once. */
static int check_descriptor(const cmi_connector_t *d, char *err, size_t n)
{
    if (!valid_name(d->name) || strchr(d->name, '.') != NULL) {
        snprintf(err, n, "the connector name '%s' is not a valid element prefix", d->name ? d->name : "(null)");
        return -1;
    }
    if (d->version == NULL) {
        snprintf(err, n, "the descriptor has no version");
        return -1;
    }
    if (d->config != NULL) {
        char why[256];
        if (cmi_params_table_check(d->config->params, d->config->params_size, why, sizeof(why)) != 0) {
            snprintf(err, n, "connection config: %s", why);
            return -1;
        }
    }
    if (check_ops(d, err, n) != 0 || check_listeners(d, err, n) != 0)
        return -1;
    for (const cmi_error_def_t *e = d->errors; e != NULL && e->code != 0; e++)
        if (e->status < 100 || e->status > 599 || e->name == NULL) {
            snprintf(err, n, "error %d has no name or a bad HTTP status %d", e->code, e->status);
            return -1;
        }
    return 0;
}

/* The ABI check reads only the first fields, whatever the rest holds. */
static int check_abi(const cmi_connector_t *d, char *err, size_t n)
{
    if (d->magic != CMI_CONNECTOR_MAGIC) {
        snprintf(err, n, "the symbol %s is not a cmi connector descriptor (bad magic number)", CMI_CONNECTOR_SYMBOL);
        return -1;
    }
    if (d->abi_major != CMI_CONNECTOR_ABI_MAJOR || d->abi_minor > CMI_CONNECTOR_ABI_MINOR) {
        snprintf(err, n,
                 "built for connector ABI %u.%u, but this cmi runs ABI %d.%d (expected major %d, minor at most "
                 "%d): rebuild the module against this cmi's headers",
                 (unsigned)d->abi_major, (unsigned)d->abi_minor, CMI_CONNECTOR_ABI_MAJOR, CMI_CONNECTOR_ABI_MINOR,
                 CMI_CONNECTOR_ABI_MAJOR, CMI_CONNECTOR_ABI_MINOR);
        return -1;
    }
    if (d->struct_size < DESC_MIN_SIZE) {
        snprintf(err, n, "descriptor of %u bytes is smaller than ABI %u.%u's %zu", (unsigned)d->struct_size,
                 (unsigned)d->abi_major, (unsigned)d->abi_minor, (size_t)DESC_MIN_SIZE);
        return -1;
    }
    return 0;
}

/* All or nothing: every code is checked before any is registered. */
static int register_errors(const cmi_connector_t *d, char *err, size_t n)
{
    for (const cmi_error_def_t *e = d->errors; e != NULL && e->code != 0; e++) {
        const char *name = cmi_error_name(e->code);
        if (name != NULL && (cmi_error_status(e->code) != e->status || strcmp(name, e->name) != 0)) {
            snprintf(err, n, "error code %d is already registered as %s (status %d)", e->code, name,
                     cmi_error_status(e->code));
            return -1;
        }
    }
    for (const cmi_error_def_t *e = d->errors; e != NULL && e->code != 0; e++)
        if (cmi_error_register(e->code, e->status, e->name) != 0) {
            snprintf(err, n, "too many error codes (the engine keeps at most %d)", CMI_ERRORS_MAX);
            return -1;
        }
    return 0;
}

static int load_one(cmi_plugins_t *p, const char *path, cmi_diag_t *diag)
{
    /* RTLD_LOCAL: a module's symbols never satisfy another's; RTLD_NOW: an
     * unresolved symbol is found here, not on the first message. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        cmi_diag_error(diag, path, 0, "cannot load the connector module: %s", dlerror());
        return -1;
    }
    const cmi_connector_t *d = dlsym(h, CMI_CONNECTOR_SYMBOL);
    char err[512];
    if (d == NULL) {
        cmi_diag_error(diag, path, 0, "not a cmi connector: no symbol '%s'", CMI_CONNECTOR_SYMBOL);
        dlclose(h);
        return -1;
    }
    if (check_abi(d, err, sizeof(err)) != 0 || check_descriptor(d, err, sizeof(err)) != 0) {
        cmi_diag_error(diag, path, 0, "connector module refused: %s", err);
        dlclose(h);
        return -1;
    }
    const cmi_module_t *prev = cmi_plugins_find(p, d->name, strlen(d->name));
    if (prev != NULL) {
        cmi_diag_error(diag, path, 0, "a connector named '%s' is already loaded from %s", d->name, prev->path);
        dlclose(h);
        return -1;
    }
    if (d->init != NULL && d->init(&cmi_host_api, err, sizeof(err)) != 0) {
        cmi_diag_error(diag, path, 0, "connector '%s' failed to initialise: %s", d->name, err);
        dlclose(h);
        return -1;
    }
    if (register_errors(d, err, sizeof(err)) != 0) {
        cmi_diag_error(diag, path, 0, "connector '%s': %s", d->name, err);
        if (d->shutdown != NULL)
            d->shutdown();
        dlclose(h);
        return -1;
    }
    p->mods = cmi_xrealloc(p->mods, (p->count + 1) * sizeof(*p->mods));
    p->mods[p->count++] = (cmi_module_t){cmi_xstrdup(path), h, d};
    cmi_log_debug("connectors", "loaded connector %s %s from %s", d->name, d->version, path);
    return 0;
}

static int is_module_name(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0 && name[0] != '.';
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads the modules of one folder in name order (a stable order makes a
 * duplicate name error name the same file every time). */
static int load_folder(cmi_plugins_t *p, const char *dir, int explicit, cmi_diag_t *diag)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (!explicit && errno == ENOENT)
            return 0;
        cmi_diag_error(diag, dir, 0, "cannot open the connectors folder: %s", strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (is_module_name(e->d_name)) {
            names = cmi_xrealloc(names, (n + 1) * sizeof(*names));
            names[n++] = cmi_xstrdup(e->d_name);
        }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
            cmi_diag_error(diag, dir, 0, "path too long: %s", names[i]);
            rc = -1;
        } else if (load_one(p, path, diag) != 0) {
            rc = -1;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

cmi_plugins_t *cmi_plugins_load(const char *path, int explicit, cmi_diag_t *diag)
{
    cmi_plugins_t *p = cmi_xcalloc(1, sizeof(*p));
    p->search_path = cmi_xstrdup(path ? path : "");
    int rc = 0;
    const char *s = p->search_path;
    while (*s != '\0') {
        const char *colon = strchr(s, ':');
        size_t len = colon ? (size_t)(colon - s) : strlen(s);
        if (len > 0) {
            char *dir = cmi_xmalloc(len + 1);
            memcpy(dir, s, len);
            dir[len] = '\0';
            if (load_folder(p, dir, explicit, diag) != 0)
                rc = -1;
            free(dir);
        }
        s += len;
        if (*s == ':')
            s++;
    }
    if (rc != 0) {
        cmi_plugins_destroy(p);
        return NULL;
    }
    return p;
}

void cmi_plugins_destroy(cmi_plugins_t *p)
{
    if (p == NULL)
        return;
    /* Modules stay mapped until the process ends: threads of libraries
     * they use may outlive shutdown by a moment, and leak reports of the
     * sanitizers and valgrind can only name code that is still mapped. */
    for (size_t i = p->count; i-- > 0;) {
        if (p->mods[i].desc->shutdown != NULL)
            p->mods[i].desc->shutdown();
        free((char *)p->mods[i].path);
    }
    free(p->mods);
    free((char *)p->search_path);
    free(p);
}

const cmi_module_t *cmi_plugins_find(const cmi_plugins_t *p, const char *name, size_t len)
{
    for (size_t i = 0; p != NULL && i < p->count; i++) {
        const char *n = p->mods[i].desc->name;
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return &p->mods[i];
    }
    return NULL;
}

const cmi_module_t *cmi_plugins_find_listener(const cmi_plugins_t *p, const char *class_name,
                                              const char *protocol, const cmi_listener_def_t **def)
{
    for (size_t i = 0; p != NULL && i < p->count; i++) {
        const cmi_listener_def_t *l = p->mods[i].desc->listeners;
        for (; l != NULL && l->classes != NULL; l++) {
            int hit = 0;
            if (class_name != NULL)
                for (const char *const *c = l->classes; *c != NULL; c++)
                    hit |= strcmp(*c, class_name) == 0;
            if (protocol != NULL && l->protocol != NULL)
                hit |= strcmp(l->protocol, protocol) == 0;
            if (hit) {
                *def = l;
                return &p->mods[i];
            }
        }
    }
    return NULL;
}

const cmi_op_def_t *cmi_module_find_op(const cmi_module_t *m, const char *name)
{
    for (const cmi_op_def_t *op = m->desc->ops; op->name != NULL; op++)
        if (strcmp(op->name, name) == 0)
            return op;
    return NULL;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A build tree is recognised by config.status next to the cmi binary; its
 * connector modules are in connectors/NAME/.libs.  Returns NULL when cmi
 * does not run from a build tree. */
static const char *build_tree_path(cmi_arena_t *arena)
{
    const char *path = NULL;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return NULL;
    *slash = '\0';
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof(probe), "%s/config.status", exe);
    if (access(probe, F_OK) != 0)
        return NULL;
    path = "";
    snprintf(probe, sizeof(probe), "%s/connectors", exe);
    DIR *d = opendir(probe);
    if (d == NULL)
        return path;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        const char *libs = cmi_arena_sprintf(arena, "%s/%s/.libs", probe, e->d_name);
        if (is_dir(libs))
            path = *path ? cmi_arena_sprintf(arena, "%s:%s", path, libs) : libs;
    }
    closedir(d);
    return path;
}

/* From a build tree, the modules built there (not those of an older
 * install); else the install folder. */
const char *cmi_plugins_default_path(cmi_arena_t *arena)
{
    const char *build = build_tree_path(arena);
    return build != NULL ? build : CMI_CONNECTORS_DIR;
}
