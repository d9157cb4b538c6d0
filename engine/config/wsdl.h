/* <publishWSDL> of a proxy service: the WSDL read at load (inline, from a
 * local entry, a file or an http(s) URI), its endpoint addresses cut out to
 * be written per request, and its operations (docs/mi-compatibility.md,
 * "Proxy services"). */
#ifndef CMI_CONFIG_WSDL_H
#define CMI_CONFIG_WSDL_H

#include <libxml/tree.h>

#include "config/compile.h"

/* The largest WSDL read from a file or URI. */
#define CMI_WSDL_MAX_BYTES (4u << 20)

/* The WSDL the proxy serves: the published one (publish: its
 * <publishWSDL>) with bindings and ports made for the proxy as Axis2 does
 * (or as written with useOriginalwsdl), or, with publish NULL, Axis2's
 * WSDL of a proxy without one (the operation "mediate").  NULL after an
 * error.  p's name and flags must be set. */
const cmi_wsdl_t *cmi_compile_wsdl(cmi_compile_t *cc, xmlNodePtr publish, const cmi_proxy_t *p);

/* The operation a SOAP request names: by its SOAPAction (or SOAP 1.2
 * action), else by the namespace and name of the body's first element;
 * NULL when neither names one. */
const cmi_wsdl_op_t *cmi_wsdl_find_op(const cmi_wsdl_t *w, const char *action, const char *elem_ns,
                                      const char *elem_name);

/* The WSDL as served to a client of base ("http://host:port"): every
 * endpoint address the proxy's own, base/services/NAME.NAME<suffix>.
 * malloc'd, *len its length. */
char *cmi_wsdl_render(const cmi_wsdl_t *w, const char *base, const char *proxy_name, size_t *len);

#endif
