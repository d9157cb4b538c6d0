/* The message context (docs/design.md, "The message context").
 *
 * One per HTTP request or inbound delivery.  Everything it holds lives in
 * its arena, freed in one step when the last reference goes: the flow holds
 * one reference while it runs, the HTTP request another until h2o disposes
 * of it (so a response body in the arena stays valid while h2o sends it).
 *
 * A message belongs to one worker thread; only that thread touches it,
 * except cmi_flow_post_resume(), which any thread may call once per suspension. */
#ifndef CMI_RUNTIME_MSG_H
#define CMI_RUNTIME_MSG_H

#include <h2o/multithread.h>
#include <jansson.h>
#include <libxml/tree.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/htab.h"
#include "runtime/flow.h"
#include "runtime/value.h"

typedef struct cmi_worker cmi_worker_t;
typedef struct cmi_api cmi_api_t;
typedef struct cmi_resource cmi_resource_t;

/* Property scopes (cmi_scope_t) come from <cmi/types.h>. */

/* Returns the scope for an attribute value, -1 when unknown. */
int cmi_scope_parse(const char *name);

typedef struct {
    const char *name;
    cmi_value_t value;
} cmi_kv_t;

typedef struct {
    cmi_kv_t *items;
    size_t count, cap;
} cmi_kvlist_t;

typedef struct {
    const char *name;
    const char *value;
    size_t name_len, value_len;
    /* Set on headers that go out with the response: set by a mediator, or
     * taken from a backend's response.  Request headers are readable
     * ($trp:X) but are not echoed back to the client. */
    unsigned outbound : 1;
} cmi_header_t;

typedef struct {
    cmi_header_t *items;
    size_t count, cap;
} cmi_headers_t;

typedef enum {
    CMI_PAYLOAD_NONE = 0, /* no body */
    CMI_PAYLOAD_JSON,
    CMI_PAYLOAD_XML,
    CMI_PAYLOAD_TEXT,
    CMI_PAYLOAD_BINARY
} cmi_payload_kind_t;

/* The payload: raw bytes plus lazily built views.  Exactly one
 * representation is authoritative at a time; the others are derived on
 * demand and dropped when the payload changes. */
typedef struct {
    const char *bytes; /* valid when bytes_valid */
    size_t len;
    const char *content_type; /* as sent/received, with parameters */
    cmi_payload_kind_t kind;
    json_t *json;   /* owned (arena cleanup) when not NULL */
    xmlDocPtr xml;  /* owned (arena cleanup) when not NULL */
    xmlDocPtr xpath_doc; /* the payload as XPath sees it (expr/xpath.c), owned */
    const char *parse_error; /* why the last view could not be built */
    unsigned bytes_valid : 1;
    unsigned json_tried : 1;
    unsigned xml_tried : 1;
    unsigned xpath_too_large : 1; /* the XPath document would pass the view limit */
    /* Counts as read though no view was made: a <call>'s response, which
     * MI's call mediator hands on built (written as JSON, a SOAP envelope
     * is its Body's content: runtime/render.c). */
    unsigned built : 1;
} cmi_payload_t;

/* How a message answers whoever sent it (HTTP, an inbound endpoint). */
typedef struct cmi_msg_origin {
    const char *name;
    /* Sends the response now (respond mediator, errors). */
    void (*respond)(cmi_msg_t *msg);
    /* The flow is over; called once, after respond if there was one. */
    void (*finish)(cmi_msg_t *msg);
} cmi_msg_origin_t;

#define CMI_MSG_MAGIC 0x434d494du /* "CMIM": checked where connectors hand a message back */

struct cmi_msg {
    uint32_t magic;
    cmi_arena_t *arena;
    cmi_worker_t *worker;
    const char *id; /* "urn:uuid:..." as MI's message ids */
    unsigned refs;
    /* The deployment it runs in, to its end: a reference (a reload swaps
     * deployments; this one stays until its last message ends). */
    struct cmi_config *config;

    const cmi_msg_origin_t *origin;
    void *origin_data;

    /* Its service's counters (runtime/metrics.h): the service's
     * metric_slot (CMI_METRICS_NO_SERVICE: none) and the connection's
     * invocation URL; when it began and when it was answered (monotonic
     * ns, 0: not yet). */
    uint32_t metric_service;
    unsigned metric_url;
    uint64_t started_ns, responded_ns;

    /* What was dispatched (NULL for inbound messages). */
    const cmi_api_t *api;
    const cmi_resource_t *resource;
    const char *method;
    const char *request_uri; /* path and query as received */
    const char *sub_path;    /* after the API context, without the query */
    const char *rest_postfix; /* after the API context, with the query (MI's REST_URL_POSTFIX) */
    const char *operation;    /* a proxy's operation (MI's OperationName), else NULL */
    cmi_kvlist_t path_params;
    cmi_kvlist_t query_params;

    cmi_headers_t headers; /* transport headers */
    cmi_kvlist_t props[2]; /* default, axis2 */
    cmi_kvlist_t vars;
    cmi_payload_t payload;

    /* Error slot (also visible as ERROR_CODE / ERROR_MESSAGE / ERROR_DETAIL). */
    int error_code;
    /* <throwError type>: ERROR_CODE is this string instead of error_code
     * (cleared by the next cmi_msg_set_error). */
    const char *error_type;
    const char *error_message;
    const char *error_detail;

    /* Runner state (runtime/flow.c). */
    struct {
        const cmi_sequence_t *seq;
        size_t pc;
        struct cmi_func_frame *func; /* the template call in effect (NULL: none) */
    } *frames;
    size_t nframes, frames_cap;
    const cmi_sequence_t *fault_seq; /* resource faultSequence, else the fault sequence */
    /* The deployment's local entries (key -> cmi_local_entry_t): what
     * get-property('KEY') reads when no property KEY is set, as Synapse. */
    const cmi_htab_t *local_entries;
    /* The response path (<send>, <loopback>): what runs on the response
     * (NULL with has_out_seq: nothing; without: the response goes back to
     * the caller), chosen at dispatch; out_path once it runs. */
    const cmi_sequence_t *out_seq;
    /* Runs once when the current path ends (a <send> waiting for the rest
     * of the in path); an error on the way cancels it. */
    int (*at_end)(cmi_msg_t *msg, void *data);
    void *at_end_data;
    unsigned sends; /* <send>s made: an out path that sends again each time is cut off */
    const cmi_mediator_t *suspended_by;
    unsigned suspended : 1;
    unsigned in_fault : 1;
    unsigned has_out_seq : 1;
    unsigned out_path : 1; /* the response direction (<in>/<out>, <send/>) */
    unsigned fault_unhandled : 1; /* the last error found no fault sequence */
    unsigned responded : 1;
    unsigned dropped : 1;
    unsigned finished : 1;
    /* The flow removed the To header: WS-Addressing's anonymous address, so
     * a <send/> without an endpoint answers the caller (MI's makefault
     * examples: remove To, then send). */
    unsigned to_anonymous : 1;
    /* A <send> or a non-blocking <call> ran: a proxy's target endpoint is
     * not used (mediators/call.c). */
    unsigned handed_on : 1;

    /* Its owner's hooks (NULL in unit tests): set by its creator. */
    const struct cmi_msg_owner *owner;
    /* Cross-thread resume (runtime/flow.c posts it, runtime/worker.c delivers). */
    h2o_multithread_message_t resume_link;
    int resume_rc;
    struct cmi_resume_error *resume_error; /* malloc'd by the resumer, freed on the worker */
    /* A continuation set (on the worker) by whatever suspended the message:
     * it runs on the worker when the resume arrives and returns the flow
     * code to continue with (a connector call's result handling). */
    int (*resume_fn)(cmi_msg_t *msg, void *data);
    void *resume_data;
};

/* The parameters of one sequence-template call (<call-template>): what
 * $func:NAME, get-property('func', 'NAME') and ${params.functionParams.NAME}
 * read inside the template and what it calls (expr/funcparam.c).  In the
 * message's arena. */
typedef struct cmi_func_arg {
    const char *name;
    cmi_value_t value;
    const struct cmi_expr *lazy; /* {{expr}}: evaluated each time it is read */
    unsigned set : 1;            /* given, or defaulted */
    unsigned busy : 1;           /* a lazy value being evaluated (reading itself fails) */
} cmi_func_arg_t;

typedef struct cmi_func_frame {
    cmi_func_arg_t *args;
    size_t count;
} cmi_func_frame_t;

/* The template call the running mediator is inside, or NULL. */
cmi_func_frame_t *cmi_msg_func_frame(const cmi_msg_t *msg);

/* What a message's owner (its worker, runtime/worker.c) is told, through
 * hooks its creator sets, so that the message context calls nothing above
 * it. */
typedef struct cmi_msg_owner {
    /* Any thread: have cmi_flow_resumed(msg) run on the owner; -1 when it
     * no longer takes messages (drained). */
    int (*post_resume)(cmi_msg_t *msg);
    /* Owner thread: its flow has ended (the last mediator ran). */
    void (*finished)(cmi_msg_t *msg);
    /* The last reference went; arena_bytes: what the message's arena held;
     * config: the message's reference to its deployment, now the owner's
     * to release. */
    void (*released)(cmi_worker_t *w, size_t arena_bytes, struct cmi_config *config);
} cmi_msg_owner_t;

/* Creates a message of worker (NULL in unit tests; owner: its hooks, may
 * be NULL) with one reference held by the caller.  Workers create theirs
 * with cmi_worker_msg_create(). */
cmi_msg_t *cmi_msg_create(cmi_worker_t *worker, const cmi_msg_owner_t *owner, const cmi_msg_origin_t *origin,
                          void *origin_data);
void cmi_msg_retain(cmi_msg_t *msg);
/* Drops a reference; the last one frees the arena and everything in it. */
void cmi_msg_release(cmi_msg_t *msg);

/* --- errors ----------------------------------------------------------- */

/* Fills the error slot; returns CMI_FLOW_ERROR so a mediator can
 * `return cmi_msg_set_error(...)`.  Strings are copied. */
int cmi_msg_set_error(cmi_msg_t *msg, int code, const char *message, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --- properties and variables ----------------------------------------- */

/* Values are stored as given, borrowed: strings and JSON must live at
 * least as long as the message (its arena, or the configuration).  A JSON
 * tree made for one message is tied to it with cmi_msg_own_json() first.
 * JSON trees in a message are not changed in place once shared: a mediator
 * that edits one works on a copy.  Transport scope reads and writes
 * headers. */
const cmi_value_t *cmi_msg_prop_get(cmi_msg_t *msg, cmi_scope_t scope, const char *name);
void cmi_msg_prop_set(cmi_msg_t *msg, cmi_scope_t scope, const char *name, cmi_value_t value);
void cmi_msg_prop_remove(cmi_msg_t *msg, cmi_scope_t scope, const char *name);
/* A property read as text ("" and NULL: absent). */
const char *cmi_msg_prop_text(cmi_msg_t *msg, cmi_scope_t scope, const char *name);
/* Whether a property is boolean true or the text "true" (any case), as MI
 * reads its switches (NO_ENTITY_BODY, FORCE_SC_ACCEPTED, ...). */
int cmi_msg_prop_true(cmi_msg_t *msg, cmi_scope_t scope, const char *name);

const cmi_value_t *cmi_msg_var_get(cmi_msg_t *msg, const char *name);
void cmi_msg_var_set(cmi_msg_t *msg, const char *name, cmi_value_t value);
void cmi_msg_var_remove(cmi_msg_t *msg, const char *name);

/* Ties a JSON reference to the message's lifetime and returns it. */
json_t *cmi_msg_own_json(cmi_msg_t *msg, json_t *json);
/* Ties an XML document to the message's lifetime (freed with it) and
 * returns it. */
xmlDocPtr cmi_msg_own_xml(cmi_msg_t *msg, xmlDocPtr doc);

/* Generic list access, shared with path and query parameters. */
/* The first item of that name (a list may hold a name more than once). */
const cmi_value_t *cmi_kvlist_get(const cmi_kvlist_t *l, const char *name);
void cmi_kvlist_set(cmi_arena_t *arena, cmi_kvlist_t *l, const char *name, cmi_value_t value);
void cmi_kvlist_add(cmi_arena_t *arena, cmi_kvlist_t *l, const char *name, cmi_value_t value);
int cmi_kvlist_remove(cmi_kvlist_t *l, const char *name);

/* --- transport headers ------------------------------------------------- */

/* MI's Action of a request: the SOAPAction header (quotes taken off), else
 * the action parameter of a SOAP 1.2 content type; NULL when none. */
const char *cmi_msg_soap_action(cmi_msg_t *msg);

/* First header of that name (case-insensitive), or NULL. */
const char *cmi_msg_header_get(cmi_msg_t *msg, const char *name, size_t *len);
/* Replaces every header of that name with one outbound header.  Name and
 * value are copied into the arena unless copy is 0. */
void cmi_msg_header_set(cmi_msg_t *msg, const char *name, size_t name_len, const char *value,
                        size_t value_len, int copy);
/* Appends a header as received (not outbound); strings are not copied. */
void cmi_msg_header_add_inbound(cmi_msg_t *msg, const char *name, size_t name_len, const char *value,
                                size_t value_len);
void cmi_msg_header_remove(cmi_msg_t *msg, const char *name, size_t name_len);
/* A header that may go on the wire: the name an RFC 9110 token, the value
 * free of CR, LF and NUL. */
int cmi_header_valid(const char *name, size_t name_len, const char *value, size_t value_len);
/* Headers that describe the connection or the body framing: the HTTP
 * layer writes them, and a flow's value for them is not sent (as MI's
 * transport drops them). */
int cmi_header_is_framing(const char *name, size_t len);

/* --- payload --------------------------------------------------------------- */

cmi_payload_kind_t cmi_payload_kind_of(const char *content_type);

/* Sets the payload to bytes that live as long as the message. */
void cmi_msg_set_payload(cmi_msg_t *msg, const char *bytes, size_t len, const char *content_type);
/* Sets a JSON payload; the reference passes to the message. */
void cmi_msg_set_payload_json(cmi_msg_t *msg, json_t *json);
/* json is the tree of the payload's bytes as they are, built by whoever
 * checked them (an inbound listener's thread): the message keeps both and
 * never parses the bytes itself.  The reference passes to the message. */
void cmi_msg_payload_adopt_json(cmi_msg_t *msg, json_t *json);
/* The payload as bytes, serialising a JSON or XML view if one was set. */
const char *cmi_msg_payload_bytes(cmi_msg_t *msg, size_t *len);
/* The payload as JSON (borrowed, valid until the payload changes), or NULL
 * with *err set when it is not JSON. */
json_t *cmi_msg_payload_json(cmi_msg_t *msg, const char **err);
xmlDocPtr cmi_msg_payload_xml(cmi_msg_t *msg, const char **err);
/* The most bytes a view derived from the payload may take (a conversion
 * between JSON and XML, the XML document XPath reads of a JSON payload):
 * four times the request body limit, set once at start-up before any
 * message exists.  A parsed view is bounded by the bytes it comes from;
 * a converted one can repeat a name per element, hence the bound. */
#define CMI_MSG_DEFAULT_VIEW_LIMIT (40u * 1024 * 1024)
void cmi_msg_set_view_limit(size_t bytes);
size_t cmi_msg_view_limit(void);
/* After a mediator changed the XML view in place: the bytes and any other
 * view are derived from it again when next needed. */
void cmi_msg_payload_xml_changed(cmi_msg_t *msg);

#endif
