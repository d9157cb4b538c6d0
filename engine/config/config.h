/* The compiled deployment: what a folder of MI artifacts becomes after
 * loading.  Everything here is built once, lives in the configuration
 * arena, and is read-only while messages run (a running message never
 * walks an XML tree of the configuration). */
#ifndef CMI_CONFIG_CONFIG_H
#define CMI_CONFIG_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config/diag.h"
#include "core/arena.h"
#include "core/htab.h"
#include "runtime/flow.h"

typedef struct cmi_pathmatch cmi_pathmatch_t;
typedef struct cmi_dispatch cmi_dispatch_t;

/* HTTP methods a resource accepts, as a bit set. */
enum {
    CMI_METHOD_GET = 1u << 0,
    CMI_METHOD_POST = 1u << 1,
    CMI_METHOD_PUT = 1u << 2,
    CMI_METHOD_DELETE = 1u << 3,
    CMI_METHOD_PATCH = 1u << 4,
    CMI_METHOD_HEAD = 1u << 5,
    CMI_METHOD_OPTIONS = 1u << 6,
    CMI_METHOD_ALL = (1u << 7) - 1
};
/* The bit for a method name (exact case, as HTTP has it); 0 when unknown. */
unsigned cmi_method_bit(const char *name, size_t len);
/* "GET, POST" for a bit set, in a fixed order (for Allow headers). */
const char *cmi_methods_format(cmi_arena_t *arena, unsigned methods);

typedef struct cmi_api cmi_api_t;

typedef struct cmi_resource {
    const cmi_api_t *api;
    unsigned methods;
    const char *pattern; /* uri-template or url-mapping as written, NULL: any */
    const cmi_pathmatch_t *match;
    const cmi_sequence_t *in_seq;
    const cmi_sequence_t *fault_seq;
    /* The response path after <send>: the outSequence (inline or by key;
     * an empty one is a sequence of nothing), or none (has_out_seq 0): the
     * response goes back to the caller, as Synapse's resources do. */
    const cmi_sequence_t *out_seq;
    int has_out_seq;
    const char *file;
    int line;
    /* Set the first time a flow of this resource ends without a response:
     * the warning is logged once per resource, not per message. */
    atomic_flag warned_no_response;
} cmi_resource_t;

struct cmi_api {
    const char *name;
    /* Non-NULL for the API-shaped view of a proxy service (its context
     * /services/NAME, one resource): dispatch, logs and properties tell
     * them apart by it. */
    const struct cmi_proxy *proxy;
    const char *context; /* effective: version folded in, no trailing '/' ("" for "/") */
    const char *version; /* NULL when unversioned */
    uint32_t metric_slot; /* its counters (runtime/metrics.h), set when the engine starts */
    cmi_resource_t **resources;
    size_t count;
    unsigned auth; /* CMI_API_AUTH_*: what <handlers> ask of a request before dispatch */
    const struct cmi_regex_s *client_subject; /* ClientCertificateHandler's subjectPattern, or NULL */
    struct cmi_jwt_conf *jwt;                 /* the JWT handler's configuration, or NULL */
    const char *file;
    int line;
};

#define CMI_API_AUTH_BASIC 1u       /* MI's RESTBasicAuthHandler (http/basic_auth.c) */
#define CMI_API_AUTH_CLIENT_CERT 2u /* cmi's ClientCertificateHandler (http/client_cert.c) */
#define CMI_API_AUTH_JWT 4u         /* cmi's JwtAuthHandler, or io.integon's (http/jwt_auth.c) */
#define CMI_CLIENT_CERT_HANDLER "cmi.security.ClientCertificateHandler"
#define CMI_JWT_HANDLER "cmi.security.JwtAuthHandler"
#define CMI_INTEGON_JWT_HANDLER "io.integon.JwtAuthHandler"

typedef struct {
    const char *name;
    const char *value;
    int line;
} cmi_param_t;

/* A WSDL published by a proxy (<publishWSDL>), kept as text cut at each
 * endpoint address, which is written per request (the proxy's own address,
 * as MI rewrites it), and the operations it declares. */
typedef struct {
    const char *text; /* up to the next address, or to the end */
    size_t len;
    const char *port_suffix; /* "HttpSoap11Endpoint", ...; NULL after the last piece */
} cmi_wsdl_piece_t;

typedef struct {
    const char *name;
    const char *soap_action; /* NULL: none declared */
    const char *elem_ns;     /* the input's first body element, document style */
    const char *elem_name;
    int in_only;             /* no output message: the caller gets 202 at once */
} cmi_wsdl_op_t;

typedef struct {
    cmi_wsdl_piece_t *pieces;
    size_t npieces;
    cmi_wsdl_op_t *ops;
    size_t nops;
    int published; /* from <publishWSDL>: requests must name one of its operations */
} cmi_wsdl_t;

enum { CMI_PROXY_HTTP = 1, CMI_PROXY_HTTPS = 2 };

/* The proxy <parameter>s cmi honours (docs/mi-compatibility.md, "Proxy
 * services"), as flags. */
enum {
    CMI_PROXY_INBOUND_ONLY = 1u << 0,     /* inbound.only: HTTP requests get 202, nothing runs */
    CMI_PROXY_ANY_OPERATION = 1u << 1,    /* disableOperationValidation */
    CMI_PROXY_SINGLE_OPERATION = 1u << 2, /* supportSingleOperation */
    CMI_PROXY_NO_REST = 1u << 3,          /* disableREST */
    CMI_PROXY_NO_SOAP11 = 1u << 4,        /* disableSOAP11 */
    CMI_PROXY_NO_SOAP12 = 1u << 5,        /* disableSOAP12 */
    CMI_PROXY_NO_METADATA = 1u << 6,      /* exposeServiceMetadata=false: ?wsdl is 403 */
    CMI_PROXY_ORIGINAL_WSDL = 1u << 7,    /* useOriginalwsdl: the published WSDL as written */
    CMI_PROXY_KEEP_ADDRESSES = 1u << 8,   /* modifyUserWSDLPortAddress=false */
};

typedef struct cmi_proxy {
    cmi_api_t api;           /* name, context "/services/NAME", the one resource */
    cmi_resource_t resource; /* every method, every path under the context */
    cmi_resource_t *resources[1];
    unsigned transports;     /* CMI_PROXY_HTTP, CMI_PROXY_HTTPS */
    unsigned flags;          /* CMI_PROXY_INBOUND_ONLY, ... */
    int started;             /* startOnLoad */
    const cmi_wsdl_t *wsdl;  /* published, or generated (the one operation "mediate") */
} cmi_proxy_t;

typedef struct cmi_inbound {
    const char *name;
    const char *protocol; /* protocol="..." or NULL */
    const char *class_name; /* class="..." or NULL */
    const cmi_sequence_t *sequence;
    const cmi_sequence_t *on_error;
    cmi_param_t *params;
    size_t nparams;
    struct cmi_listener_impl *listener; /* the connector listener that serves it */
    uint32_t metric_slot; /* its counters (runtime/metrics.h), set when the engine starts */
    const char *file;
    int line;
} cmi_inbound_t;

typedef struct cmi_local_entry {
    const char *key;
    const char *text; /* text content (NULL for XML content) */
    const char *markup; /* XML content, standalone (a connector's config is not) */
    struct cmi_instance_impl *instance; /* a connector's connection config (<NAME.init>) */
    const char *file;
    int line;
} cmi_local_entry_t;

/* A sequence template's <parameter>s (templates/, config/template.c). */
typedef struct {
    const char *name;
    const char *default_value; /* defaultValue, a plain string; NULL: none */
    int mandatory;             /* isMandatory="true" */
} cmi_template_param_t;

typedef struct cmi_template_params {
    cmi_template_param_t *items;
    size_t count;
} cmi_template_params_t;

/* An endpoint template: its <endpoint> kept as XML, instantiated by each
 * <endpoint template="NAME"> with $PARAM values substituted. */
typedef struct cmi_endpoint_template {
    const char *name;
    const char **params; /* declared, with the implicit name and uri */
    size_t nparams;
    struct _xmlNode *endpoint; /* in a document the configuration arena frees */
    const char *file;
    int line;
} cmi_endpoint_template_t;

typedef struct cmi_config {
    cmi_arena_t *arena;
    const char *dir;
    cmi_htab_t sequences;     /* name -> cmi_sequence_t */
    cmi_htab_t local_entries; /* key -> cmi_local_entry_t */
    cmi_htab_t endpoints;     /* name -> cmi_endpoint_t (config/endpoint.h) */
    cmi_htab_t templates;     /* name -> cmi_sequence_t with tparams (sequence templates) */
    cmi_htab_t endpoint_templates; /* name -> cmi_endpoint_template_t */
    cmi_api_t **apis;
    size_t napis;
    cmi_proxy_t **proxies;
    size_t nproxies;
    cmi_inbound_t **inbounds;
    size_t ninbounds;
    const cmi_sequence_t *main_seq;  /* sequences/main.xml, or NULL */
    /* MI's _resource_mismatch_handler_: runs for a request whose API
     * matched and none of its resources did (else 404), or NULL. */
    const cmi_sequence_t *mismatch_seq;
    const cmi_sequence_t *fault_seq; /* sequences/fault.xml, or NULL */
    cmi_dispatch_t *dispatch;
    struct cmi_connector_state *connectors; /* plugin/plugin.h */
    struct cmi_endpoint_state *endpoint_states; /* every endpoint leaf's state (config/endpoint.h) */
    /* A running deployment is shared (docs/operations.md, "Reloading"): the
     * engine, each worker, each message and each injection under way hold
     * a reference.  The last release calls unused (the engine's: it
     * releases the connectors on the service thread), else destroys. */
    atomic_uint refs;
    void (*unused)(struct cmi_config *config);
    struct cmi_engine *engine;     /* the engine that runs it, NULL before */
    struct cmi_jwt_auth *jwt_auth; /* its APIs' JWT checker, when one has a handler (http/jwt_auth.h) */
    uint64_t generation;           /* 1 for the deployment loaded at start, +1 per reload */
} cmi_config_t;

struct cmi_plugins;
/* Loads and compiles the deployment in dir, reporting every problem through
 * diag.  Returns NULL when there was any error. */
cmi_config_t *cmi_config_load(const char *dir, cmi_diag_t *diag);
/* The same with connector modules (may be NULL); check_only for `cmi check`
 * (secrets that cannot be read are warnings: a CI pipeline lacks them). */
cmi_config_t *cmi_config_load_with(const char *dir, const struct cmi_plugins *plugins, int check_only,
                                   cmi_diag_t *diag);
/* Frees config now, and releases what its connectors hold (plugin/plugin.h:
 * on the service thread once any of them ran). */
void cmi_config_destroy(cmi_config_t *config);
/* Any thread.  A new configuration has one reference, its loader's. */
void cmi_config_retain(cmi_config_t *config);
void cmi_config_release(cmi_config_t *config);

#endif
