#include "config.h"

#include "runtime/errors.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int code;
    int status;
    const char *name;
} error_row_t;

#define MAX_ERRORS CMI_ERRORS_MAX

static error_row_t error_rows[MAX_ERRORS] = {
    {CMI_ERR_MEDIATION, 500, "CMI:MEDIATION_ERROR"},
    {CMI_ERR_EXPRESSION, 500, "CMI:EXPRESSION_ERROR"},
    {CMI_ERR_PAYLOAD, 400, "CMI:PAYLOAD_ERROR"},
    {CMI_ERR_SEQUENCE_DEPTH, 500, "CMI:SEQUENCE_DEPTH_EXCEEDED"},
    {CMI_ERR_PAYLOAD_TOO_LARGE, 413, "CMI:PAYLOAD_TOO_LARGE"},
};
static size_t error_count = 5;

static const error_row_t *find(int code)
{
    for (size_t i = 0; i < error_count; i++)
        if (error_rows[i].code == code)
            return &error_rows[i];
    return NULL;
}

int cmi_error_status(int code)
{
    const error_row_t *r = find(code);
    return r ? r->status : 500;
}

const char *cmi_error_name(int code)
{
    const error_row_t *r = find(code);
    return r ? r->name : NULL;
}

int cmi_error_register(int code, int status, const char *name)
{
    const error_row_t *r = find(code);
    if (r != NULL)
        return r->status == status ? 0 : -1;
    if (error_count == MAX_ERRORS)
        return -1;
    char *copy = strdup(name ? name : "");
    if (copy == NULL)
        return -1;
    error_rows[error_count++] = (error_row_t){code, status, copy}; /* kept for the process's life */
    return 0;
}
