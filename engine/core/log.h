/* Logging: one line per event with time, level, component and message.
 *
 * Text:  2026-11-21T23:33:29.123Z INFO  [http] listening on 0.0.0.0:8290
 * JSON:  {"time":"...","level":"INFO","component":"http","message":"..."}
 *
 * The component names the module and, where there is one, the instance
 * ("rabbitmq:RabbitMQConnection", "api:HelloAPI").  A line is written with
 * one write(2) so lines from several threads never interleave.  Secrets
 * never reach this module: callers format redacted values. */
#ifndef CMI_CORE_LOG_H
#define CMI_CORE_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include <cmi/types.h> /* cmi_log_level_t, shared with connectors */

typedef enum { CMI_LOG_FORMAT_TEXT = 0, CMI_LOG_FORMAT_JSON } cmi_log_format_t;

void cmi_log_configure(cmi_log_level_t min_level, cmi_log_format_t format);
/* Whether a line of level may be written for some component (the
 * lowest of the default and the components' levels): a caller that
 * formats nothing below it saves its work. */
int cmi_log_enabled(cmi_log_level_t level);
/* Parses "trace".."fatal" (any case); -1 when unknown. */
int cmi_log_level_parse(const char *name);

/* A level spec: "info", or "info,rabbitmq=debug,api:OrdersAPI=trace":
 * the default level, then levels of components.  A component's level
 * applies to the component of that name and to those under it
 * ("rabbitmq" covers "rabbitmq:RMQ"; the longest name wins).  Returns 0
 * with the default in *level, or -1 with the reason in err.  At most
 * CMI_LOG_COMPONENTS components. */
#define CMI_LOG_COMPONENTS 32
int cmi_log_spec_parse(const char *spec, cmi_log_level_t *level, char *err, size_t errlen);
/* Any thread, at start or at a reload: the components' levels of spec
 * (checked by cmi_log_spec_parse; NULL: none) take effect beside
 * cmi_log_configure's default, in place of the ones before. */
void cmi_log_configure_components(const char *spec);

void cmi_log_write(cmi_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cmi_log_vwrite(cmi_log_level_t level, const char *component, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define CMI_LOG(level, component, ...)                                                             \
    do {                                                                                           \
        if (cmi_log_enabled(level))                                                                \
            cmi_log_write((level), (component), __VA_ARGS__);                                      \
    } while (0)

#define cmi_log_trace(component, ...) CMI_LOG(CMI_LOG_TRACE, component, __VA_ARGS__)
#define cmi_log_debug(component, ...) CMI_LOG(CMI_LOG_DEBUG, component, __VA_ARGS__)
#define cmi_log_info(component, ...) CMI_LOG(CMI_LOG_INFO, component, __VA_ARGS__)
#define cmi_log_warn(component, ...) CMI_LOG(CMI_LOG_WARN, component, __VA_ARGS__)
#define cmi_log_error(component, ...) CMI_LOG(CMI_LOG_ERROR, component, __VA_ARGS__)

#endif
