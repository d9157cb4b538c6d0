/* What artifact compilers share: the compile context, XML helpers that
 * report problems with file:line, and deferred sequence references.
 *
 * The rules of docs/configuration.md, "Deployments", live here: elements
 * in the Synapse namespace (or none); every attribute checked against the
 * element's table, where an attribute is supported, known to MI but
 * cosmetic (a warning), known to MI but not supported yet (an error, since
 * ignoring it would change behaviour), or unknown (an error). */
#ifndef CMI_CONFIG_COMPILE_H
#define CMI_CONFIG_COMPILE_H

#include <libxml/tree.h>

#include "config/config.h"
#include "config/diag.h"

#include <sys/queue.h>

#define CMI_SYNAPSE_NS "http://ws.apache.org/ns/synapse"

typedef struct cmi_seqref cmi_seqref_t;
typedef struct cmi_compile cmi_compile_t;

/* A check that needs every reference resolved (a template call's
 * parameters against the template's): run by cmi_compile_resolve_refs. */
typedef void (*cmi_compile_check_fn)(cmi_compile_t *cc, void *data);
struct cmi_check {
    STAILQ_ENTRY(cmi_check) link;
    cmi_compile_check_fn fn;
    void *data;
};
/* Part of an artifact read now and compiled later, when what it may name
 * is loaded (a sequence template's body, a local entry's sequence). */
typedef enum {
    CMI_DEFER_ENDPOINTS, /* before endpoints/ */
    CMI_DEFER_SEQUENCES, /* after sequences/ */
} cmi_defer_phase_t;
typedef void (*cmi_deferred_fn)(cmi_compile_t *cc, xmlNodePtr root, void *data);
struct cmi_deferred;

struct cmi_compile {
    cmi_config_t *config;
    cmi_diag_t *diag;
    cmi_arena_t *arena; /* the configuration arena */
    const char *file;   /* the artifact being compiled, as printed */
    /* The named sequence being compiled (NULL inside APIs, inbound endpoints):
     * the source of reference edges for the cycle check. */
    const cmi_sequence_t *owner;
    /* References to resolve once all sequences are known, in the order met
     * (STAILQ_INIT before the first). */
    STAILQ_HEAD(cmi_seqref_list, cmi_seqref) refs;
    const char *source; /* the artifact's text while it compiles */
    size_t source_len;
    STAILQ_HEAD(cmi_check_list, cmi_check) checks; /* (STAILQ_INIT before the first) */
    STAILQ_HEAD(cmi_deferred_list, cmi_deferred) deferred; /* (STAILQ_INIT too) */
    int endpoint_depth; /* endpoint templates being expanded inside one another */
};

typedef enum {
    CMI_ATTR_OK = 0,       /* supported */
    CMI_ATTR_COSMETIC,     /* MI attribute without effect on the message: warning */
    CMI_ATTR_UNSUPPORTED,  /* MI attribute cmi does not implement yet: error */
} cmi_attr_support_t;

typedef struct {
    const char *name;
    cmi_attr_support_t support;
} cmi_attr_rule_t;

/* Attributes every mediator may carry (description, and MI's tooling ones). */
extern const cmi_attr_rule_t cmi_common_mediator_attrs[];

int cmi_xml_line(xmlNodePtr node);
/* An element in the Synapse namespace or in none. */
int cmi_xml_is_synapse(xmlNodePtr node);
/* A Synapse element with that local name. */
int cmi_xml_is(xmlNodePtr node, const char *name);
/* The attribute's value copied into the config arena, or NULL when absent. */
const char *cmi_xml_attr(cmi_compile_t *cc, xmlNodePtr node, const char *name);
/* The JWT handler of an API (config/jwt_handler.c); the scopes check once
 * its resources are compiled. */
void cmi_compile_jwt_handler(cmi_compile_t *cc, cmi_api_t *api, xmlNodePtr handler);
void cmi_compile_jwt_scopes(cmi_compile_t *cc, xmlNodePtr handlers, const cmi_api_t *api);
/* Concatenated text content of node (arena), "" when none. */
const char *cmi_xml_text(cmi_compile_t *cc, xmlNodePtr node);
/* Checks node's attributes against rules (and extra, which may be NULL);
 * returns the number of errors reported. */
int cmi_xml_check_attrs(cmi_compile_t *cc, xmlNodePtr node, const cmi_attr_rule_t *rules,
                        const cmi_attr_rule_t *extra);
/* s without leading and trailing white space, copied into the config
 * arena; *len (may be NULL) gets its length. */
const char *cmi_compile_trim(cmi_compile_t *cc, const char *s, size_t *len);
/* An element of the configuration as standalone markup (namespaces declared
 * on its ancestors declared on it), in the configuration arena: an inline
 * XML payload (payloadFactory, enrich). */
const char *cmi_compile_element_markup(cmi_compile_t *cc, xmlNodePtr elem, size_t *len);
/* Reports an error when node has element children; for elements that
 * take only attributes or text. */
int cmi_xml_no_children(cmi_compile_t *cc, xmlNodePtr node);

void cmi_compile_error(cmi_compile_t *cc, xmlNodePtr node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cmi_compile_warn(cmi_compile_t *cc, xmlNodePtr node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Allocates a compiled mediator of size bytes and fills its common part. */
void *cmi_mediator_new(cmi_compile_t *cc, xmlNodePtr node, size_t size, cmi_mediator_run_fn run);

/* Compiles every element child of parent as a mediator list. */
cmi_sequence_t *cmi_compile_mediators(cmi_compile_t *cc, xmlNodePtr parent, const char *name);
/* Compiles one mediator element; NULL after reporting an error. */
cmi_mediator_t *cmi_compile_mediator(cmi_compile_t *cc, xmlNodePtr node);
/* Records a reference to the named sequence key; *slot is filled once all
 * sequences are loaded (an unknown key is an error at line). */
void cmi_compile_ref_sequence(cmi_compile_t *cc, const char *key, const cmi_sequence_t **slot,
                              int line, const char *what);
/* The same for a <call-template target="key">: *slot gets the template's
 * body (a sequence with tparams); the template's calls are edges of the
 * cycle check as sequence references are. */
void cmi_compile_ref_template(cmi_compile_t *cc, const char *key, const cmi_sequence_t **slot, int line,
                              const char *what);
/* Keeps a copy of root's document (and of the file's text) and runs
 * fn(cc, copy of root, data) in the phase, with cc->file set as now. */
void cmi_compile_defer(cmi_compile_t *cc, cmi_defer_phase_t phase, xmlNodePtr root, cmi_deferred_fn fn, void *data);
/* Runs what was deferred to phase, in the order deferred. */
void cmi_compile_run_deferred(cmi_compile_t *cc, cmi_defer_phase_t phase);
struct cmi_expr;
/* An attribute in the forms of MI's ValueFactory: "literal", "{expr}" or
 * "{{expr}}" (evaluated where the value is read: *lazy).  Returns 0 with
 * *expr NULL for a literal, or -1 after reporting an expression error at
 * its place in the attribute. */
int cmi_compile_value_attr(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *value,
                           const struct cmi_expr **expr, int *lazy);
/* Runs fn(cc, data) once every reference is resolved. */
void cmi_compile_after_refs(cmi_compile_t *cc, cmi_compile_check_fn fn, void *data);
/* Compiles the expression text of node's attribute attr (or, when attr is
 * NULL, of node's text content); an error is reported with the line and
 * column of the offending part in the file.  NULL after an error. */
struct cmi_expr;
struct cmi_template;
struct cmi_expr *cmi_compile_expr(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *text);
/* The same for a template (a text with ${...} inside); mode is a
 * cmi_template_mode_t, nargs the number of legacy $N arguments. */
struct cmi_template *cmi_compile_template(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *text,
                                          int mode, size_t nargs);

/* Reports an expression error found in text, the attribute attr's value
 * (NULL: node's text content), at err->offset: file:line:col. */
struct cmi_expr_error;
void cmi_compile_report_expr_error(cmi_compile_t *cc, xmlNodePtr node, const char *attr, const char *text,
                                   const struct cmi_expr_error *err);

/* Resolves every recorded reference and checks named sequences for cycles. */
/* Whether a sequence reference to key was met so far. */
int cmi_compile_is_referenced(const cmi_compile_t *cc, const char *key);
void cmi_compile_resolve_refs(cmi_compile_t *cc);

#endif
