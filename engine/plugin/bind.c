/* The deployment side of connectors: XML elements checked against a
 * module's parameter tables and turned into the module's own structs
 * (docs/connector-sdk.md, "Parameter tables").  Load-time errors name the
 * file and line; a running message never sees XML. */
#include "config.h"

#include <libxml/tree.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config/compile.h"
#include "core/log.h"
#include "core/secrets.h"
#include "core/str.h"
#include "expr/expr.h"
#include "plugin/plugin.h"

/* ---- parameter sets ------------------------------------------------------ */

static void pset_init(cmi_compile_t *cc, cmi_pset_t *ps, const cmi_module_t *mod, const char *what,
                      const cmi_param_def_t *defs, size_t size)
{
    static const cmi_param_def_t none[] = {{NULL}};
    ps->mod = mod;
    ps->what = what;
    ps->defs = defs ? defs : none;
    ps->size = size >= sizeof(cmi_params_head_t) ? size : sizeof(cmi_params_head_t);
    ps->statics = cmi_arena_calloc(cc->arena, 1, ps->size);
    ps->errors_before = cc->diag->errors;
    /* Defaults were checked when the module loaded. */
    cmi_params_defaults(cc->arena, ps->defs, ps->statics);
}

static const cmi_param_def_t *pset_row(const cmi_pset_t *ps, const char *name, unsigned *row)
{
    return cmi_params_row(ps->defs, name, row);
}

static void add_dynamic(cmi_compile_t *cc, cmi_pset_t *ps, unsigned row, struct cmi_expr *e, struct cmi_template *t,
                        const char *source)
{
    cmi_pdyn_t *dyn = cmi_arena_calloc(cc->arena, ps->ndyn + 1, sizeof(*dyn));
    if (ps->ndyn > 0)
        memcpy(dyn, ps->dyn, ps->ndyn * sizeof(*dyn));
    dyn[ps->ndyn] = (cmi_pdyn_t){row, e, t, source};
    ps->dyn = dyn;
    ps->ndyn++;
    cmi_param_bit_put(((cmi_params_head_t *)ps->statics)->dynamic, row, 1);
    if (ps->defs[row].flags & CMI_PARAM_LAZY)
        ps->lazy = 1;
}

/* A dynamic value: {${expr}} or {legacy-expr}; the error column points into
 * the element's text. */
static void compile_dynamic(cmi_compile_t *cc, cmi_pset_t *ps, xmlNodePtr node, unsigned row, const char *raw,
                            const char *v)
{
    const cmi_param_def_t *def = &ps->defs[row];
    if (!(def->flags & CMI_PARAM_DYNAMIC) && def->type != CMI_PARAM_EXPR) {
        cmi_compile_error(cc, node, "%s: parameter %s cannot be dynamic (written %s)", ps->what, def->name,
                          (def->flags & CMI_PARAM_SECRET) ? "{...}" : v);
        return;
    }
    size_t len = strlen(v);
    const char *inner = cmi_arena_strndup(cc->arena, v + 1, len - 2);
    cmi_expr_error_t err = {0};
    struct cmi_expr *e = cmi_expr_compile(cc->arena, inner, node, &err);
    if (e == NULL && (def->flags & CMI_PARAM_SECRET)) {
        cmi_compile_error(cc, node, "%s: parameter %s: not a valid expression", ps->what, def->name);
        return;
    }
    if (e == NULL) {
        /* Offsets are reported against the element's text as written. */
        const char *at = strstr(raw, inner);
        err.offset += at ? (size_t)(at - raw) : 0;
        cmi_compile_report_expr_error(cc, node, NULL, raw, &err);
        return;
    }
    add_dynamic(cc, ps, row, e, NULL, v);
}

static void compile_template(cmi_compile_t *cc, cmi_pset_t *ps, xmlNodePtr node, unsigned row, const char *raw)
{
    struct cmi_template *t = cmi_compile_template(cc, node, NULL, raw, CMI_TEMPLATE_TEXT, 0);
    if (t == NULL)
        return;
    const cmi_param_def_t *def = &ps->defs[row];
    if (!cmi_template_is_literal(t)) {
        add_dynamic(cc, ps, row, NULL, t, raw);
        return;
    }
    *(const char **)((char *)ps->statics + def->offset) = raw;
    cmi_param_bit_put(((cmi_params_head_t *)ps->statics)->given, row, 1);
}

static void compile_static(cmi_compile_t *cc, cmi_pset_t *ps, int line, unsigned row, const char *v)
{
    char err[512];
    int rc = cmi_param_static(cc->arena, ps->defs, row, v, ps->statics, err, sizeof(err));
    if (rc == CMI_PARAM_ESECRET && cc->config->connectors->check_only)
        cmi_diag_warn(cc->diag, cc->file, line, "%s: parameter %s: %s", ps->what, ps->defs[row].name, err);
    else if (rc != 0)
        cmi_diag_error(cc->diag, cc->file, line, "%s: parameter %s: %s", ps->what, ps->defs[row].name, err);
}

/* One parameter as written (node is the element the value came from). */
static void pset_set(cmi_compile_t *cc, cmi_pset_t *ps, xmlNodePtr node, const char *name, const char *raw,
                     int may_be_dynamic)
{
    int line = cmi_xml_line(node);
    unsigned row;
    const cmi_param_def_t *def = pset_row(ps, name, &row);
    if (def == NULL) {
        cmi_diag_error(cc->diag, cc->file, line, "%s: unknown parameter '%s' (cmi describe %s lists them)", ps->what,
                       name, ps->mod->desc->name);
        return;
    }
    if (cmi_param_bit(ps->seen, row)) {
        cmi_diag_error(cc->diag, cc->file, line, "%s: parameter %s is given twice", ps->what, name);
        return;
    }
    const char *v = cmi_param_value(cc->arena, def, raw);
    if (v == NULL)
        return; /* an empty element is an absent parameter (docs/configuration.md, "Deployments") */
    cmi_param_bit_put(ps->seen, row, 1);
    if (def->flags & CMI_PARAM_UNSUPPORTED) {
        cmi_diag_error(cc->diag, cc->file, line, "%s: parameter %s is not supported by cmi yet", ps->what, name);
        return;
    }
    if (def->flags & CMI_PARAM_IGNORED) {
        /* MI's tooling writes it; it means nothing to cmi (cmi describe
         * marks it "ignored"). */
        cmi_log_debug("connectors", "%s:%d: %s: parameter %s has no effect in cmi (accepted as MI writes it)",
                      cc->file, line, ps->what, name);
        return;
    }
    const char *t = cmi_compile_trim(cc, raw, NULL);
    if (cmi_param_is_dynamic_syntax(def, t)) {
        if (!may_be_dynamic) {
            cmi_diag_error(cc->diag, cc->file, line, "%s: parameter %s cannot be dynamic here", ps->what, name);
            return;
        }
        compile_dynamic(cc, ps, node, row, raw, t);
    } else if (def->type == CMI_PARAM_EXPR && may_be_dynamic && !cmi_secret_is_ref(t)) {
        compile_template(cc, ps, node, row, v);
    } else {
        compile_static(cc, ps, line, row, v);
    }
}

static void pset_finish(cmi_compile_t *cc, cmi_pset_t *ps, xmlNodePtr node, cmi_validate_fn validate)
{
    /* A row written but not valid has had its error already. */
    const cmi_params_head_t *head = ps->statics;
    for (unsigned i = 0; ps->defs[i].name != NULL; i++)
        if ((ps->defs[i].flags & CMI_PARAM_REQUIRED) && !cmi_param_bit(head->given, i) &&
            !cmi_param_bit(head->dynamic, i) && !cmi_param_bit(ps->seen, i))
            cmi_compile_error(cc, node, "%s: the parameter %s is required", ps->what, ps->defs[i].name);
    /* Rules across parameters, once each one is valid on its own. */
    char err[512] = "";
    if (validate != NULL && cc->diag->errors == ps->errors_before && validate(ps->statics, err, sizeof(err)) != 0)
        cmi_compile_error(cc, node, "%s: %s", ps->what, err[0] ? err : "the parameters do not fit together");
}

/* A parameter element's value: its text, or its content serialised when it
 * holds elements (an XML body written inline). */
static const char *param_text(cmi_compile_t *cc, xmlNodePtr node)
{
    int has_elements = 0;
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        has_elements |= c->type == XML_ELEMENT_NODE;
    if (!has_elements)
        return cmi_xml_text(cc, node);
    xmlBufferPtr buf = xmlBufferCreate();
    for (xmlNodePtr c = node->children; c != NULL; c = c->next)
        xmlNodeDump(buf, node->doc, c, 0, 0);
    const char *s = cmi_arena_strdup(cc->arena, (const char *)xmlBufferContent(buf));
    xmlBufferFree(buf);
    return s;
}

/* ---- modules by element name -------------------------------------------- */

static const cmi_module_t *find_module(cmi_compile_t *cc, xmlNodePtr node, const char *name, size_t len)
{
    const cmi_plugins_t *p = cc->config->connectors->plugins;
    const cmi_module_t *m = cmi_plugins_find(p, name, len);
    if (m == NULL)
        cmi_compile_error(cc, node, "<%s>: no connector module named '%.*s' is loaded (connectors path: %s)",
                          node->name, (int)len, name, p && *p->search_path ? p->search_path : "none");
    return m;
}

/* ---- fingerprints ----------------------------------------------------------- */

/* What a reload compares (lifecycle.c): the element as written, what its
 * string parameters resolved to (a changed secret file changes the config)
 * and the content of the files CMI_PARAM_FILE rows name.  Only the digest
 * is kept. */
typedef struct {
    EVP_MD_CTX *md;
} fingerprint_t;

static void fp_begin(fingerprint_t *fp)
{
    fp->md = EVP_MD_CTX_new();
    if (fp->md == NULL || EVP_DigestInit_ex(fp->md, EVP_sha256(), NULL) != 1) {
        cmi_log_write(CMI_LOG_FATAL, "connectors", "OpenSSL cannot compute SHA-256");
        abort();
    }
}

static void fp_add(fingerprint_t *fp, const void *bytes, size_t len)
{
    EVP_DigestUpdate(fp->md, bytes, len);
    EVP_DigestUpdate(fp->md, "", 1); /* a separator: "ab"+"c" differs from "a"+"bc" */
}

static void fp_add_str(fingerprint_t *fp, const char *s)
{
    fp_add(fp, s ? s : "", s ? strlen(s) : 0);
}

static void fp_add_node(fingerprint_t *fp, xmlNodePtr node)
{
    xmlBufferPtr buf = xmlBufferCreate();
    xmlNodeDump(buf, node->doc, node, 0, 0);
    fp_add(fp, xmlBufferContent(buf), (size_t)xmlBufferLength(buf));
    xmlBufferFree(buf);
}

#define FP_FILE_MAX (4u << 20) /* a larger file counts by its size and time */

/* A file a parameter names (CMI_PARAM_FILE): its content, read now. */
static void fp_add_file(fingerprint_t *fp, const char *path)
{
    struct stat st;
    FILE *f = NULL;
    if (path == NULL || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        fp_add_str(fp, "(no file)");
        return;
    }
    if (st.st_size > FP_FILE_MAX || (f = fopen(path, "rb")) == NULL) {
        char meta[96];
        snprintf(meta, sizeof(meta), "%lld@%lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                 st.st_mtim.tv_nsec);
        fp_add_str(fp, meta);
        return;
    }
    char buf[16384];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        EVP_DigestUpdate(fp->md, buf, n);
    fclose(f);
    fp_add(fp, "", 0);
}

static void fp_end(fingerprint_t *fp, const cmi_pset_t *ps, unsigned char out[CMI_FINGERPRINT_LEN])
{
    const cmi_params_head_t *head = ps->statics;
    for (unsigned i = 0; ps->defs[i].name != NULL; i++) {
        const cmi_param_def_t *d = &ps->defs[i];
        if (d->type != CMI_PARAM_STRING || !cmi_param_bit(head->given, i))
            continue;
        /* As resolved: a secret reference ($FILE:, $SYSTEM:, a vault
         * lookup) in any string row counts by its value. */
        const char *v = *(const char *const *)((const char *)ps->statics + d->offset);
        fp_add_str(fp, v);
        if (d->flags & CMI_PARAM_FILE)
            fp_add_file(fp, v);
    }
    unsigned n = 0;
    EVP_DigestFinal_ex(fp->md, out, &n);
    EVP_MD_CTX_free(fp->md);
}

/* Instances and listeners are compiled into an arena of their own (they
 * may outlive the configuration): cc->arena points at it meanwhile. */
static cmi_arena_t *own_arena_begin(cmi_compile_t *cc)
{
    cmi_arena_t *config_arena = cc->arena;
    cc->arena = cmi_arena_create(4096);
    return config_arena;
}

static void *grow(cmi_arena_t *a, void *items, size_t n, size_t *cap)
{
    if (n < *cap)
        return items;
    *cap = *cap ? *cap * 2 : 8;
    void **more = cmi_arena_calloc(a, *cap, sizeof(void *));
    if (n > 0)
        memcpy(more, items, n * sizeof(void *));
    return more;
}

/* ---- <localEntry key><NAME.init> ---------------------------------------- */

cmi_instance_impl_t *cmi_bind_instance(cmi_compile_t *cc, xmlNodePtr elem, const char *key)
{
    const char *name = (const char *)elem->name;
    const cmi_module_t *m = find_module(cc, elem, name, (size_t)(strchr(name, '.') - name));
    if (m == NULL)
        return NULL;
    const cmi_config_def_t *def = m->desc->config;
    if (def == NULL) {
        cmi_compile_error(cc, elem, "<%s>: the connector '%s' has no connection config", name, m->desc->name);
        return NULL;
    }
    static const cmi_attr_rule_t no_attrs[] = {{NULL, 0}};
    cmi_xml_check_attrs(cc, elem, no_attrs, NULL);
    cmi_arena_t *config_arena = own_arena_begin(cc);
    cmi_instance_impl_t *inst = cmi_arena_calloc(cc->arena, 1, sizeof(*inst));
    inst->arena = cc->arena;
    atomic_init(&inst->refs, 1); /* the configuration's */
    inst->mod = m;
    inst->file = cmi_arena_strdup(cc->arena, cc->file);
    inst->line = cmi_xml_line(elem);
    key = cmi_arena_strdup(cc->arena, key);
    pset_init(cc, &inst->params, m, cmi_arena_sprintf(cc->arena, "<%s> in local entry '%s'", name, key), def->params,
              def->params_size);
    for (xmlNodePtr c = elem->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        /* A connection is made once, not per message: no dynamic values. */
        pset_set(cc, &inst->params, c, (const char *)c->name, param_text(cc, c), 0);
    }
    pset_finish(cc, &inst->params, elem, def->validate);
    fingerprint_t fp;
    fp_begin(&fp);
    fp_add_str(&fp, key);
    fp_add_node(&fp, elem);
    fp_end(&fp, &inst->params, inst->fingerprint);
    inst->pub.magic = CMI_INSTANCE_MAGIC;
    inst->pub.host = &cmi_host_api;
    inst->pub.name = key;
    inst->pub.component = cmi_arena_sprintf(cc->arena, "%s:%s", m->desc->name, key);
    inst->pub.params = inst->params.statics;
    cc->arena = config_arena;
    cmi_connector_state_t *st = cc->config->connectors;
    st->instances = grow(st->arena, st->instances, st->ninstances, &st->instances_cap);
    st->instances[st->ninstances++] = inst;
    return inst;
}

/* ---- <NAME.OPERATION configKey> ------------------------------------------ */

static const cmi_attr_rule_t op_attrs[] = {
    {"configKey", CMI_ATTR_OK},
    {NULL, 0},
};

static cmi_instance_impl_t *bind_config(cmi_compile_t *cc, xmlNodePtr node, const cmi_module_t *m,
                                        const cmi_op_def_t *op, int *ok)
{
    const char *key = cmi_xml_attr(cc, node, "configKey");
    *ok = 1;
    if (key != NULL && *key == '\0')
        key = NULL;
    if (key == NULL) {
        if (op->flags & CMI_OP_NEEDS_CONFIG) {
            cmi_compile_error(cc, node, "<%s>: the configKey attribute is required (a local entry with <%s.init>)",
                              node->name, m->desc->name);
            *ok = 0;
        }
        return NULL;
    }
    if (op->flags & CMI_OP_NO_CONFIG) {
        cmi_compile_error(cc, node, "<%s>: this operation takes no configKey", node->name);
        *ok = 0;
        return NULL;
    }
    if (key[0] == '{') {
        cmi_compile_error(cc, node, "<%s>: a dynamic configKey is not supported by cmi yet", node->name);
        *ok = 0;
        return NULL;
    }
    /* Local entries load before everything that uses them. */
    const cmi_local_entry_t *le = cmi_htab_gets(&cc->config->local_entries, key);
    if (le == NULL || le->instance == NULL || le->instance->mod != m) {
        cmi_compile_error(cc, node, "<%s configKey=\"%s\">: %s", node->name, key,
                          le == NULL              ? "no local entry has that key"
                          : le->instance == NULL ? "that local entry is not a connection config"
                                                  : cmi_arena_sprintf(cc->arena, "that local entry configures '%s'",
                                                                      le->instance->mod->desc->name));
        *ok = 0;
        return NULL;
    }
    return le->instance;
}

/* responseVariable and overwriteBody belong to the engine. */
static int engine_param(cmi_compile_t *cc, cmi_binding_impl_t *b, xmlNodePtr c)
{
    const char *name = (const char *)c->name;
    if (strcmp(name, "responseVariable") == 0) {
        const char *v = cmi_compile_trim(cc, cmi_xml_text(cc, c), NULL);
        if (*v == '\0')
            return 1;
        if (v[0] == '{')
            cmi_compile_error(cc, c, "<responseVariable>: must be a variable name, not an expression");
        b->response_variable = v;
        return 1;
    }
    if (strcmp(name, "overwriteBody") == 0) {
        const char *v = cmi_compile_trim(cc, cmi_xml_text(cc, c), NULL);
        if (*v != '\0' && cmi_parse_bool(v, &b->overwrite_body) != 0)
            cmi_compile_error(cc, c, "<overwriteBody>: '%s' is not true or false", v);
        return 1;
    }
    return 0;
}

static void list_ops(cmi_compile_t *cc, const cmi_module_t *m, cmi_strbuf_t *b)
{
    cmi_strbuf_init(b, cc->arena, 64);
    for (const cmi_op_def_t *op = m->desc->ops; op->name != NULL; op++)
        cmi_strbuf_printf(b, "%s%s", op == m->desc->ops ? "" : ", ", op->name);
}

cmi_mediator_t *cmi_bind_operation(cmi_compile_t *cc, xmlNodePtr node)
{
    const char *name = (const char *)node->name;
    const char *dot = strchr(name, '.');
    const cmi_module_t *m = find_module(cc, node, name, (size_t)(dot - name));
    if (m == NULL)
        return NULL;
    if (strcmp(dot + 1, "init") == 0) {
        cmi_compile_error(cc, node, "<%s>: a connection config belongs in a local entry (<localEntry key=\"...\">) "
                          "and is named with configKey; inline configs are not supported by cmi yet", name);
        return NULL;
    }
    const cmi_op_def_t *op = cmi_module_find_op(m, dot + 1);
    if (op == NULL) {
        cmi_strbuf_t ops;
        list_ops(cc, m, &ops);
        cmi_compile_error(cc, node, "<%s>: the connector '%s' has no operation '%s' (it has: %s)", name, m->desc->name,
                          dot + 1, ops.data);
        return NULL;
    }
    cmi_xml_check_attrs(cc, node, cmi_common_mediator_attrs, op_attrs);
    int ok;
    cmi_instance_impl_t *inst = bind_config(cc, node, m, op, &ok);
    cmi_binding_impl_t *b = cmi_arena_calloc(cc->arena, 1, sizeof(*b));
    b->mod = m;
    b->op = op;
    b->inst = inst;
    pset_init(cc, &b->params, m, cmi_arena_sprintf(cc->arena, "<%s>", name), op->params, op->params_size);
    for (xmlNodePtr c = node->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (!cmi_xml_is_synapse(c)) {
            cmi_compile_error(cc, c, "<%s>: unexpected element <%s> in another namespace", name, c->name);
            continue;
        }
        if (!engine_param(cc, b, c))
            pset_set(cc, &b->params, c, (const char *)c->name, param_text(cc, c), 1);
    }
    pset_finish(cc, &b->params, node, op->validate);
    if (!ok)
        return NULL;
    b->pub.magic = CMI_BINDING_MAGIC;
    b->pub.host = &cmi_host_api;
    b->pub.instance = inst ? &inst->pub : NULL;
    b->pub.where = cmi_arena_sprintf(cc->arena, "%s:%d", cc->file, cmi_xml_line(node));
    b->pub.params = b->params.statics;
    SLIST_INSERT_HEAD(&cc->config->connectors->bindings, b, link);
    cmi_op_mediator_t *om = cmi_mediator_new(cc, node, sizeof(*om), cmi_host_op_run);
    om->binding = b;
    return &om->base;
}

/* ---- <inboundEndpoint class|protocol> --------------------------------- */

/* Parameters every MI inbound endpoint may carry; they describe MI's
 * polling and clustering and have no effect in cmi (a connector may list
 * them as CMI_PARAM_IGNORED rows, so that cmi describe shows them). */
static int generic_inbound_param(const char *name)
{
    return strcmp(name, "sequential") == 0 || strcmp(name, "coordination") == 0 ||
           strcmp(name, "inbound.behavior") == 0;
}

void cmi_bind_listener(cmi_compile_t *cc, xmlNodePtr root, cmi_inbound_t *ib)
{
    const cmi_listener_def_t *def = NULL;
    const cmi_module_t *m =
        cmi_plugins_find_listener(cc->config->connectors->plugins, ib->class_name, ib->protocol, &def);
    if (m == NULL) {
        if (ib->class_name != NULL)
            cmi_compile_error(cc, root, "<inboundEndpoint name=\"%s\">: no connector module provides class '%s'",
                              ib->name, ib->class_name);
        else
            cmi_compile_error(cc, root, "<inboundEndpoint name=\"%s\">: protocol '%s' is not supported by cmi yet",
                              ib->name, ib->protocol);
        return;
    }
    cmi_arena_t *config_arena = own_arena_begin(cc);
    cmi_listener_impl_t *l = cmi_arena_calloc(cc->arena, 1, sizeof(*l));
    l->arena = cc->arena;
    atomic_init(&l->refs, 1); /* the configuration's */
    pthread_mutex_init(&l->lock, NULL);
    l->mod = m;
    l->def = def;
    l->inbound = ib;
    l->config = cc->config;
    l->file = cmi_arena_strdup(cc->arena, ib->file);
    l->line = ib->line;
    const char *name = cmi_arena_strdup(cc->arena, ib->name);
    pset_init(cc, &l->params, m, cmi_arena_sprintf(cc->arena, "<inboundEndpoint name=\"%s\">", name),
              def->params, def->params_size);
    /* Its sequence and onError are not part of it: a reload that changes
     * only them keeps the listener (its messages run the new ones). */
    fingerprint_t fp;
    fp_begin(&fp);
    fp_add_str(&fp, name);
    fp_add_str(&fp, ib->class_name);
    fp_add_str(&fp, ib->protocol);
    for (xmlNodePtr c = root->children; c != NULL; c = c->next) {
        if (!cmi_xml_is(c, "parameters"))
            continue;
        fp_add_node(&fp, c);
        for (xmlNodePtr p = c->children; p != NULL; p = p->next) {
            if (!cmi_xml_is(p, "parameter"))
                continue; /* reported by the inbound endpoint compiler */
            xmlChar *pname = xmlGetNoNsProp(p, (const xmlChar *)"name");
            if (pname == NULL || xmlHasProp(p, (const xmlChar *)"key") != NULL) {
                xmlFree(pname);
                continue;
            }
            unsigned row;
            if (pset_row(&l->params, (const char *)pname, &row) != NULL ||
                !generic_inbound_param((const char *)pname))
                pset_set(cc, &l->params, p, cmi_arena_strdup(cc->arena, (const char *)pname), param_text(cc, p), 0);
            else
                cmi_log_debug("connectors", "%s:%d: %s: parameter %s has no effect in cmi (accepted as MI writes "
                              "it)", cc->file, cmi_xml_line(p), l->params.what, (const char *)pname);
            xmlFree(pname);
        }
    }
    pset_finish(cc, &l->params, root, def->validate);
    fp_end(&fp, &l->params, l->fingerprint);
    l->pub.magic = CMI_LISTENER_MAGIC;
    l->pub.host = &cmi_host_api;
    l->pub.name = name;
    l->pub.component = cmi_arena_sprintf(cc->arena, "%s:%s", m->desc->name, name);
    l->pub.params = l->params.statics;
    cc->arena = config_arena;
    ib->listener = l;
    cmi_connector_state_t *st = cc->config->connectors;
    st->listeners = grow(st->arena, st->listeners, st->nlisteners, &st->listeners_cap);
    st->listeners[st->nlisteners++] = l;
}
