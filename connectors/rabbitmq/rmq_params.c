/* The choices of the shared option rows (rmq_params.h), and reading a
 * target spec from an operation's parameters. */
#include "config.h"

#include <string.h>

#include "rmq_params.h"

/* In the order of rmq_queue_type_t, rmq_overflow_t, rmq_exchange_type_t,
 * rmq_body_type_t, rmq_dls_t and rmq_classic_version_t. */
const char *const rmq_queue_type_names[] = {"CLASSIC", "QUORUM", "STREAM", NULL};
const char *const rmq_overflow_names[] = {"DROP_HEAD", "REJECT_PUBLISH", "REJECT_PUBLISH_DLX", NULL};
const char *const rmq_exchange_type_names[] = {"DIRECT", "FANOUT", "TOPIC", "HEADERS", NULL};
const char *const rmq_body_type_names[] = {"JSON", "XML", "TEXT", NULL};
const char *const rmq_dls_names[] = {"AT_MOST_ONCE", "AT_LEAST_ONCE", NULL};
const char *const rmq_classic_version_names[] = {"V1", "V2", NULL};

void rmq_target_spec_read(rmq_target_spec_t *spec, const void *params, unsigned qbase, const rmq_queue_opts_t *q,
                          unsigned xbase, const rmq_exchange_opts_t *x)
{
    memset(spec, 0, sizeof(*spec));
    spec->queue = *q;
    for (unsigned i = 0; i < RMQ_Q_COUNT; i++)
        if (CMI_PARAM_GIVEN(params, qbase + i))
            spec->queue_set |= 1u << i;
    if (CMI_PARAM_IS_DYNAMIC(params, qbase + RMQ_Q_NAME))
        spec->dynamic |= RMQ_DYN_QUEUE;
    if (x == NULL)
        return;
    spec->exchange = *x;
    for (unsigned i = 0; i < RMQ_X_COUNT; i++)
        if (CMI_PARAM_GIVEN(params, xbase + i))
            spec->exchange_set |= 1u << i;
    if (CMI_PARAM_IS_DYNAMIC(params, xbase + RMQ_X_NAME))
        spec->dynamic |= RMQ_DYN_EXCHANGE;
}

void rmq_target_spec_set_queue(rmq_target_spec_t *spec, unsigned opt)
{
    spec->queue_set |= 1u << opt;
}
