/* cmi connector SDK: the vocabulary the engine and connectors share (flow
 * codes, log levels, property scopes).  The engine's own code uses these
 * very definitions. */
#ifndef CMI_TYPES_H
#define CMI_TYPES_H

/* Flow codes, as the engine's mediators use them: 0 is success. */
enum {
    CMI_FLOW_ERROR = -1,    /* the error is set (call_fail); fault handling runs */
    CMI_FLOW_CONTINUE = 0,  /* go on with the next mediator */
    CMI_FLOW_DONE = 1,      /* the flow is over (engine mediators only) */
    CMI_FLOW_SUSPENDED = 2, /* call_suspend() was called: call_resume() follows */
};

typedef enum {
    CMI_LOG_TRACE = 0,
    CMI_LOG_DEBUG,
    CMI_LOG_INFO,
    CMI_LOG_WARN,
    CMI_LOG_ERROR,
    CMI_LOG_FATAL,
    CMI_LOG_OFF
} cmi_log_level_t;

/* Property scopes, as the property mediator names them. */
typedef enum {
    CMI_SCOPE_DEFAULT = 0, /* "default": props.synapse.X, get-property('X') */
    CMI_SCOPE_AXIS2,       /* "axis2": props.axis2.X */
    CMI_SCOPE_TRANSPORT,   /* transport headers */
    CMI_SCOPE_OPERATION,   /* "operation": kept with the default scope (one message per flow) */
} cmi_scope_t;

#endif
