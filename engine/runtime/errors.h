/* Error codes and the HTTP status a caller gets for each when no fault
 * sequence answers (docs/mediators.md, "Errors and fault handling").
 * Connectors register their own codes at start-up, before the workers run;
 * afterwards the table is only read. */
#ifndef CMI_RUNTIME_ERRORS_H
#define CMI_RUNTIME_ERRORS_H

/* The engine's own codes.  MI leaves ERROR_CODE unset or 0 for many
 * mediation failures; cmi always sets a code so that fault sequences can
 * switch on it. */
enum {
    CMI_ERR_MEDIATION = 300001,     /* a mediator failed (bad value, type mismatch) */
    CMI_ERR_EXPRESSION = 300002,    /* an expression could not be evaluated */
    CMI_ERR_PAYLOAD = 300003,       /* the payload is not valid JSON/XML where a view is needed */
    CMI_ERR_SEQUENCE_DEPTH = 300004, /* sequences nested deeper than CMI_FLOW_MAX_DEPTH */
    CMI_ERR_PAYLOAD_TOO_LARGE = 300005 /* a conversion of the payload would pass the view limit */
};

/* Status for a code: the registered one, else 500. */
int cmi_error_status(int code);
/* The short message for a code ("CMI:MEDIATION_ERROR"), or NULL. */
const char *cmi_error_name(int code);
#define CMI_ERRORS_MAX 128

/* Registers (code, status, name) for a connector; call before workers start.
 * The name is copied (a module may be unloaded).  Returns -1 if the code is
 * already registered with another status, or the table is full. */
int cmi_error_register(int code, int status, const char *name);

#endif
