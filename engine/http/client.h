/* HTTP calls to backends, on one curl thread (libcurl's multi interface:
 * curl_multi_poll, and curl_multi_wakeup when work arrives).
 *
 * A caller (a worker, for the call mediator) fills a request, submits it,
 * and is told in done(), on the curl thread, which posts the completion
 * back to the message's worker.  The multi handle keeps connections to
 * backends alive between calls.  Failures to get an answer are classified
 * (connect, timeout, closed) so that the call mediator can give MI's error
 * codes; an answer of any status is a result. */
#ifndef CMI_HTTP_CLIENT_H
#define CMI_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

typedef enum {
    CMI_HTTP_OK = 0,         /* an answer came (any status) */
    CMI_HTTP_CONNECT_FAILED, /* refused, unreachable, name not resolved */
    CMI_HTTP_TIMEOUT,        /* no complete answer within timeout_ms */
    CMI_HTTP_CLOSED,         /* the connection closed before a complete answer */
    CMI_HTTP_FAILED,         /* anything else (error says what) */
} cmi_http_result_t;

typedef struct cmi_http_client cmi_http_client_t;
typedef struct cmi_http_request cmi_http_request_t;

typedef struct {
    char *name, *value; /* as libcurl's header API gives them: the value without surrounding blanks */
} cmi_http_header_t;

struct cmi_http_request {
    /* In: set by the caller, unchanged and valid until done() ran. */
    const char *method;
    const char *url;
    const char *const *headers; /* "Name: value" lines */
    size_t nheaders;
    const char *body;
    size_t body_len;
    uint64_t timeout_ms;     /* whole call; 0: none */
    int http10;              /* HTTP/1.0 (MI's FORCE_HTTP_1.0) */
    size_t max_response;     /* bytes of body; 0: 64 MiB */
    void (*done)(cmi_http_request_t *req); /* curl thread */
    void *data;
    /* Out, valid in done() until cmi_http_request_dispose(). */
    cmi_http_result_t result;
    long status;
    char *response;          /* NUL-terminated; response_len bytes */
    size_t response_len;
    cmi_http_header_t *response_headers; /* the final response's headers and trailers, as they came */
    size_t nresponse_headers;
    char error[256];
    /* Private. */
    void *easy;
    void *slist;
    STAILQ_ENTRY(cmi_http_request) inbox_link;
    LIST_ENTRY(cmi_http_request) running_link;
    size_t response_cap, header_bytes;
};

/* Starts the curl thread.  NULL with a reason on failure. */
cmi_http_client_t *cmi_http_client_create(char *err, size_t n);
/* Any thread: the request runs; done() is called exactly once. */
void cmi_http_client_submit(cmi_http_client_t *c, cmi_http_request_t *req);
/* Stops the thread; requests still running end with CMI_HTTP_FAILED. */
void cmi_http_client_destroy(cmi_http_client_t *c);
/* Connections the client opened so far (keep-alive checks in tests). */
unsigned long cmi_http_client_connections(cmi_http_client_t *c);
/* The value of the response's first header called name (any case), NULL
 * when it has none. */
const char *cmi_http_response_header(const cmi_http_request_t *req, const char *name);
/* Frees the response buffers. */
void cmi_http_request_dispose(cmi_http_request_t *req);

#endif
