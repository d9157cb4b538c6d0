/* cmi connector SDK: typed parameter tables.
 *
 * A connector declares what its connection config, each operation and each
 * inbound listener accept as a table of rows; the engine does the rest: it
 * reads the XML, rejects unknown, missing and malformed parameters with
 * file:line at load time, fills the connector's own struct at the row's
 * offset, compiles dynamic values ({${expr}}) and evaluates them for each
 * message, and prints `cmi describe` from the same rows (Fluent Bit's
 * config maps, nginx's directive tables).
 *
 * Every parameter struct starts with a cmi_params_head_t, then has one
 * field per row, of the C type the row's type names:
 *
 *   enum { P_QUEUE, P_TIMEOUT, P_COUNT };
 *   typedef struct {
 *       cmi_params_head_t head;
 *       const char *queue;
 *       uint64_t timeout_ms;
 *   } publish_params_t;
 *   static const cmi_param_def_t publish_params[] = {
 *       [P_QUEUE] = CMI_PARAM("queue", CMI_PARAM_STRING, CMI_PARAM_DYNAMIC,
 *                             publish_params_t, queue, NULL, "target queue"),
 *       [P_TIMEOUT] = CMI_PARAM("publishTimeout", CMI_PARAM_DURATION, 0,
 *                               publish_params_t, timeout_ms, "60000", "confirm timeout (ms)"),
 *       [P_COUNT] = CMI_PARAM_END,
 *   };
 *
 * Indexing the table by an enum keeps row numbers and CMI_PARAM_GIVEN()
 * in step; the row macros use designated initializers, so -Wextra stays
 * quiet about the fields a row leaves out. */
#ifndef CMI_PARAMS_H
#define CMI_PARAMS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Rows per table at most (the given/dynamic bit sets below). */
#define CMI_PARAMS_MAX 128

typedef enum {
    /* const char *: the text as written (trimmed). */
    CMI_PARAM_STRING = 1,
    /* int64_t: decimal, within [min, max] when min < max. */
    CMI_PARAM_INT,
    /* int: true/false in any case. */
    CMI_PARAM_BOOL,
    /* uint64_t milliseconds: a number of ms as MI writes them, or with a
     * unit: 250ms, 5s, 2m, 1h.  Bounded like INT. */
    CMI_PARAM_DURATION,
    /* int: the index of the value in choices, matched in any case. */
    CMI_PARAM_ENUM,
    /* cmi_param_list_t: comma-separated, items trimmed, empty ones dropped. */
    CMI_PARAM_LIST,
    /* json_t *: any JSON text (borrowed: the host owns it). */
    CMI_PARAM_JSON,
    /* const char *: a template, text with ${...} inside, rendered for each
     * message (MI's inline expressions in body parameters).  Always
     * evaluated per message; the DYNAMIC flag is implied. */
    CMI_PARAM_EXPR,
} cmi_param_type_t;

enum {
    /* Load error when absent (or empty). */
    CMI_PARAM_REQUIRED = 1u << 0,
    /* Never logged or echoed in an error; the value may be written as
     * $SYSTEM:NAME (an environment variable) or $FILE:PATH (a file's
     * content, without its trailing newline). */
    CMI_PARAM_SECRET = 1u << 1,
    /* May be written {${expr}} or {legacy-expr}, evaluated per message;
     * without this flag such a value is a load error. */
    CMI_PARAM_DYNAMIC = 1u << 2,
    /* A dynamic value is evaluated only when the operation asks for it with
     * the host's call_eval_param() (a body parameter of an unchosen type is
     * then never evaluated). */
    CMI_PARAM_LAZY = 1u << 3,
    /* Known to MI, not implemented by this connector: a load error when
     * given, so that a deployment never silently loses behaviour. */
    CMI_PARAM_UNSUPPORTED = 1u << 4,
    /* Known to MI and accepted without effect (MI's tooling writes it). */
    CMI_PARAM_IGNORED = 1u << 5,
    /* Since ABI 1.7, for a string: the value names a file (a certificate,
     * a key store) whose content is part of the configuration: a reload
     * that finds the file changed starts the connection config or the
     * listener anew, as when its XML changes. */
    CMI_PARAM_FILE = 1u << 6,
};

typedef struct {
    const char *const *items;
    size_t count;
} cmi_param_list_t;

/* The first member of every parameter struct.  Bit i of given is set when
 * row i has a value for this message (written in the XML, or a dynamic
 * value that evaluated to something non-empty); defaults do not set it.
 * Bit i of dynamic is set when row i was written as an expression. */
typedef struct {
    uint64_t given[CMI_PARAMS_MAX / 64];
    uint64_t dynamic[CMI_PARAMS_MAX / 64];
} cmi_params_head_t;

#define CMI_PARAM_GIVEN(params, row)                                                                      \
    ((((const cmi_params_head_t *)(params))->given[(row) / 64] >> ((row) % 64)) & 1u)
#define CMI_PARAM_IS_DYNAMIC(params, row)                                                                 \
    ((((const cmi_params_head_t *)(params))->dynamic[(row) / 64] >> ((row) % 64)) & 1u)

struct cmi_param_def;
/* An extra check of a value (for LIST: of each item) beyond its type, such
 * as "host:port".  Returns 0, or -1 with a reason in err, which must not
 * repeat the value when def->flags has CMI_PARAM_SECRET.  Runs at load for
 * static values and per message for dynamic ones. */
typedef int (*cmi_param_check_fn)(const struct cmi_param_def *def, const char *value, char *err,
                                  size_t err_size);

typedef struct cmi_param_def {
    const char *name;
    cmi_param_type_t type;
    unsigned flags;
    size_t offset;             /* of the field in the parameter struct */
    const char *default_value; /* as it would be written; NULL: zero/NULL */
    const char *description;   /* one line, for `cmi describe` */
    const char *const *choices; /* ENUM: the names, NULL-terminated */
    int64_t min, max;          /* INT, DURATION: bounds, applied when min < max */
    cmi_param_check_fn check;  /* may be NULL */
    const void *reserved[2];   /* zero; later minors may give them a meaning */
} cmi_param_def_t;

/* Table rows.  Fields a macro does not take (check, say) can be added to
 * a designated initializer of one's own. */
#define CMI_PARAM(name_, type_, flags_, struct_, field_, default_, description_)                           \
    {                                                                                                      \
        .name = (name_), .type = (type_), .flags = (flags_), .offset = offsetof(struct_, field_),          \
        .default_value = (default_), .description = (description_)                                       \
    }
#define CMI_PARAM_RANGE(name_, type_, flags_, struct_, field_, default_, description_, min_, max_)          \
    {                                                                                                      \
        .name = (name_), .type = (type_), .flags = (flags_), .offset = offsetof(struct_, field_),          \
        .default_value = (default_), .description = (description_), .min = (min_), .max = (max_)         \
    }
#define CMI_PARAM_CHOICE(name_, flags_, struct_, field_, default_, description_, choices_)                  \
    {                                                                                                      \
        .name = (name_), .type = CMI_PARAM_ENUM, .flags = (flags_), .offset = offsetof(struct_, field_),   \
        .default_value = (default_), .description = (description_), .choices = (choices_)                 \
    }
#define CMI_PARAM_END {.name = NULL}

#endif
