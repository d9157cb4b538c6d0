"""Proxy services as MI serves them (issue 23; docs/mi-compatibility.md,
"Proxy services"): the URL forms under /services, the target endpoint's
rules, the published WSDL and its operations, and what Axis2 answers
before mediation.  Backends are real servers the tests start; the SOAP
clients are written here."""
import json
import os
import shutil
import socket
import tempfile
import xml.etree.ElementTree as ET

from harness import Cmi, check
from test_call import closed_port
from test_mi_docs_http import SOAP11_ENV, SOAP12_ENV, WSDL, StockQuoteService
from test_mi_docs_proxy import envelope, get_quote, is_quote, soap11

NS = 'xmlns="http://ws.apache.org/ns/synapse"'
WSDL11 = "http://schemas.xmlsoap.org/wsdl/"


class Deployment:
    """A deployment folder written from {relative path: text}."""

    def __init__(self, files):
        self.files = files

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="cmi-proxy-")
        for rel, text in self.files.items():
            path = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def proxy(name, body, attrs=""):
    return {"proxy-services/%s.xml" % name: '<proxy %s name="%s" %s>%s</proxy>' % (NS, name, attrs, body)}


# What the flow saw, as JSON: the operation, the proxy, REST_URL_POSTFIX.
ECHO_FACTS = ('<inSequence><payloadFactory media-type="json"><format>{"op": "$1", "proxy": "$2", "postfix": "$3"}'
              '</format><args><arg expression="get-property(\'OperationName\')"/>'
              '<arg expression="get-property(\'proxy.name\')"/>'
              '<arg expression="get-property(\'axis2\', \'REST_URL_POSTFIX\')"/></args></payloadFactory>'
              '<respond/></inSequence>')


def facts(cmi, method, path, body=None, headers=None):
    status, _, data = cmi.request(method, path, body, headers or {"Content-Type": "application/xml"})
    return status, (json.loads(data) if status == 200 else data)


def test_url_forms_and_rest_url_postfix():
    files = proxy("P", "<target>%s</target>" % ECHO_FACTS)
    files.update(proxy("a.b", "<target>%s</target>" % ECHO_FACTS))
    with Deployment(files) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for path, postfix in (("/services/P", ""), ("/services/P/a/b?x=1", "/a/b?x=1"), ("/services/P?x=1", "?x=1"),
                                  ("/services/P.PHttpSoap11Endpoint", ""),
                                  ("/services/P.PHttpSoap12Endpoint/z", "/z"), ("/services/P.PHttpEndpoint", "")):
                status, got = facts(cmi, "POST", path, b"<a/>")
                check(status == 200 and got == {"op": "mediate", "proxy": "P", "postfix": postfix},
                      "%s: %d %r" % (path, status, got))
            status, got = facts(cmi, "POST", "/services/P", b'{"a": 1}', {"Content-Type": "application/json"})
            check(status == 200 and got["op"] == "mediate", "a JSON client: %d %r" % (status, got))
            status, got = facts(cmi, "POST", "/services/a.b.a.bHttpSoap12Endpoint/y", b"<a/>")
            check(status == 200 and got == {"op": "mediate", "proxy": "a.b", "postfix": "/y"}, "a dotted name: %r" % (got,))
            status, _, data = cmi.request("POST", "/services/" + "." * 60000 + "HttpEndpoint", b"<a/>")
            check(status in (404, 414, 431), "a segment of dots: %d" % status)
            status, got = facts(cmi, "GET", "/services/P/x")
            check(status == 200 and got["postfix"] == "/x", "a GET runs the flow too: %r" % (got,))
            for path in ("/services/P.Bogus", "/services/P.QHttpSoap11Endpoint", "/services/Nope", "/services/p"):
                status, _, data = cmi.request("POST", path, b"<a/>", {"Content-Type": "application/xml"})
                check(status == 404, "%s is no service: %d %r" % (path, status, data))
            status, _, data = cmi.request("GET", "/services")
            check(status == 403, "the list of services is not served: %d %r" % (status, data))
            cmi.wait_log(r"POST /services/P -> proxy:P")
        finally:
            cmi.stop_clean()


def test_target_endpoint_is_used_when_the_in_sequence_ends_normally():
    # Synapse sends to the target endpoint only when the in sequence
    # returned true: not after <drop>, <respond>, <send> or a non-blocking
    # <call>; a blocking call returns true.
    with StockQuoteService() as b:
        ep = '<endpoint name="Quotes" %s><address uri="http://127.0.0.1:%d/services/SimpleStockQuoteService"/>' \
             '</endpoint>' % (NS, b.port)
        files = {"endpoints/Quotes.xml": ep,
                 "sequences/logIn.xml": '<sequence %s name="logIn"><log level="custom"><property name="in" '
                                        'value="ran"/></log></sequence>' % NS,
                 "sequences/toJson.xml": '<sequence %s name="toJson"><property name="messageType" scope="axis2" '
                                         'value="application/json"/><send/></sequence>' % NS}
        files.update(proxy("Inline", '<target><inSequence><log level="custom"><property name="x" value="1"/></log>'
                                     '</inSequence><endpoint><address uri="http://127.0.0.1:%d/services/'
                                     'SimpleStockQuoteService"/></endpoint></target>' % b.port))
        files.update(proxy("Keyed", '<target inSequence="logIn" endpoint="Quotes" outSequence="toJson"/>'))
        files.update(proxy("EndpointOnly", '<target endpoint="Quotes"/>'))
        files.update(proxy("Dropped", '<target endpoint="Quotes"><inSequence><drop/></inSequence></target>'))
        files.update(proxy("Called", '<target endpoint="Quotes"><inSequence><call><endpoint key="Quotes"/></call>'
                                     '</inSequence></target>'))
        files.update(proxy("Blocking", '<target endpoint="Quotes"><inSequence><call blocking="true"><endpoint '
                                       'key="Quotes"/></call></inSequence></target>'))
        with Deployment(files) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                def sent(name):
                    before = len(b.server.seen)
                    status, headers, data = soap11(cmi, "/services/" + name, get_quote("IBM"))
                    return status, headers, data, len(b.server.seen) - before

                status, _, data, n = sent("Inline")
                check(status == 200 and is_quote(data, "IBM") and n == 1, "inline: %d %d %r" % (status, n, data))
                status, headers, data, n = sent("Keyed")
                body = json.loads(data)["Envelope"]["Body"]  # an envelope nothing read: JSON whole
                check(status == 200 and n == 1 and body["getQuoteResponse"]["return"]["symbol"] == "IBM",
                      "keyed in, endpoint, out: %d %d %r" % (status, n, data))
                cmi.wait_log(r"\[proxy:Keyed\] in = ran")
                status, _, data, n = sent("EndpointOnly")
                check(status == 200 and is_quote(data, "IBM") and n == 1, "endpoint only: %d %d" % (status, n))
                status, _, data, n = sent("Dropped")
                check(status == 202 and n == 0, "drop: nothing sent: %d %d" % (status, n))
                status, _, data, n = sent("Called")
                check(status == 202 and n == 1, "a non-blocking call: the target is not used: %d %d" % (status, n))
                status, _, data, n = sent("Blocking")
                check(status == 200 and is_quote(data, "IBM") and n == 2, "a blocking call, then the target: %d %d"
                      % (status, n))
            finally:
                cmi.stop_clean()


def test_target_fault_sequence_and_the_global_one():
    dead = closed_port()
    fault = ('<faultSequence><payloadFactory media-type="json"><format>{"fault": "$1"}</format><args>'
             '<arg expression="get-property(\'ERROR_CODE\')"/></args></payloadFactory><respond/></faultSequence>')
    files = {"sequences/fault.xml": '<sequence %s name="fault"><payloadFactory media-type="json"><format>'
                                    '{"global": true}</format></payloadFactory><respond/></sequence>' % NS}
    files.update(proxy("Own", '<target><inSequence><call><endpoint><address uri="http://127.0.0.1:%d/x"/>'
                              '</endpoint></call><respond/></inSequence>%s</target>' % (dead, fault)))
    files["sequences/inError.xml"] = ('<sequence %s name="inError"><payloadFactory media-type="json"><format>'
                                      '{"onError": true}</format></payloadFactory><respond/></sequence>' % NS)
    files.update(proxy("OnError", '<target><inSequence onError="inError"><call><endpoint><address '
                                  'uri="http://127.0.0.1:%d/x"/></endpoint></call></inSequence><endpoint><address '
                                  'uri="http://127.0.0.1:%d/y"/></endpoint></target>' % (dead, dead)))
    files.update(proxy("Global", '<target><inSequence><call><endpoint><address uri="http://127.0.0.1:%d/x"/>'
                                 '</endpoint></call><respond/></inSequence></target>' % dead))
    with Deployment(files) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/services/Own", b"<a/>", {"Content-Type": "application/xml"})
            check(json.loads(data) == {"fault": "101503"}, "the target's fault sequence: %d %r" % (status, data))
            status, _, data = cmi.request("POST", "/services/OnError", b"<a/>", {"Content-Type": "application/xml"})
            check(json.loads(data) == {"onError": True}, "the in sequence's onError, with a target: %d %r"
                  % (status, data))
            status, _, data = cmi.request("POST", "/services/Global", b"<a/>", {"Content-Type": "application/xml"})
            check(json.loads(data) == {"global": True}, "the deployment's fault sequence: %d %r" % (status, data))
        finally:
            cmi.stop_clean()


def wsdl_text():
    with open(WSDL, encoding="utf-8") as f:
        text = f.read()
    return text[text.index("<wsdl:definitions"):]


def wsdl_ports(data):
    root = ET.fromstring(data)
    return {p.get("name"): [a.get("location") for a in p][0] for p in root.iter("{%s}port" % WSDL11)}


def fault_reason(data):
    env = ET.fromstring(data)
    f11 = env.find("{%s}Body/{%s}Fault/faultstring" % (SOAP11_ENV, SOAP11_ENV))
    if f11 is not None:
        return f11.text
    return env.find("{%s}Body/{%s}Fault/{%s}Reason/{%s}Text" % ((SOAP12_ENV,) * 4)).text


def test_published_wsdl_operations():
    # A proxy with a published WSDL takes its operations only: by SOAPAction
    # (or SOAP 1.2 action), by the path after the service, or by the Body's
    # first element; anything else is Axis2's "Operation not found" fault.
    files = {"local-entries/quotes_wsdl.xml": '<localEntry %s key="quotes_wsdl">%s</localEntry>' % (NS, wsdl_text())}
    files.update(proxy("Ops", '<target>%s</target><publishWSDL key="quotes_wsdl"/>' % ECHO_FACTS))
    files.update(proxy("Lenient", '<target>%s</target><publishWSDL key="quotes_wsdl"/>'
                                  '<parameter name="disableOperationValidation">true</parameter>' % ECHO_FACTS))
    with Deployment(files) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, got = facts(cmi, "POST", "/services/Ops", envelope("<x/>"),
                                {"Content-Type": "text/xml", "SOAPAction": '"urn:placeOrder"'})
            check(status == 200 and got["op"] == "placeOrder", "by SOAPAction: %d %r" % (status, got))
            status, got = facts(cmi, "POST", "/services/Ops", envelope("<x/>", 12),
                                {"Content-Type": 'application/soap+xml; action="urn:getQuote"'})
            check(status == 200 and got["op"] == "getQuote", "by the SOAP 1.2 action: %d %r" % (status, got))
            status, got = facts(cmi, "POST", "/services/Ops/placeOrder", b"<order/>")
            check(status == 200 and got["op"] == "placeOrder", "by the path: %d %r" % (status, got))
            status, got = facts(cmi, "POST", "/services/Ops", get_quote("IBM").encode())
            check(status == 200 and got["op"] == "getQuote", "by the body's element: %d %r" % (status, got))
            status, _, data = cmi.request("POST", "/services/Ops", envelope("<x/>"),
                                          {"Content-Type": "text/xml", "SOAPAction": "urn:<nothing>&"})
            check(status == 500 and fault_reason(data).startswith("The endpoint reference (EPR) for the Operation not "
                  "found is /services/Ops and the WSA Action = urn:<nothing>&"), "not found: %d %r" % (status, data))
            status, got = facts(cmi, "POST", "/services/Lenient", b"<x/>")
            check(status == 200 and got["op"] == "mediate", "disableOperationValidation: %d %r" % (status, got))
        finally:
            cmi.stop_clean()


def test_wsdl_sources_and_parameters():
    with StockQuoteService() as b:
        inline20 = ('<wsdl2:description xmlns:wsdl2="http://www.w3.org/ns/wsdl" targetNamespace="urn:t">'
                    '<wsdl2:service name="S" interface="I"><wsdl2:endpoint name="E" binding="B" '
                    'address="http://old.example/x"/></wsdl2:service></wsdl2:description>')
        files = {}
        files.update(proxy("FromUri", '<target>%s</target><publishWSDL uri="http://127.0.0.1:%d/services/'
                                      'SimpleStockQuoteService?wsdl"/>' % (ECHO_FACTS, b.port)))
        files.update(proxy("Original", '<target>%s</target><publishWSDL>%s</publishWSDL>'
                                       '<parameter name="useOriginalwsdl">true</parameter>' % (ECHO_FACTS, wsdl_text())))
        files.update(proxy("Untouched", '<target>%s</target><publishWSDL>%s</publishWSDL>'
                                        '<parameter name="useOriginalwsdl">true</parameter>'
                                        '<parameter name="modifyUserWSDLPortAddress">false</parameter>'
                                        % (ECHO_FACTS, wsdl_text())))
        files.update(proxy("Hidden", '<target>%s</target><parameter name="exposeServiceMetadata">false</parameter>'
                                     % ECHO_FACTS))
        files.update(proxy("NoSoap11", '<target>%s</target><parameter name="disableSOAP11">true</parameter>'
                                       % ECHO_FACTS))
        files.update(proxy("Wsdl20", '<target>%s</target><publishWSDL>%s</publishWSDL>' % (ECHO_FACTS, inline20)))
        with Deployment(files) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                host = "http://%s:%d/services/" % (socket.gethostname(), cmi.port)
                status, _, data = cmi.request("GET", "/services/FromUri?wsdl")
                check(status == 200 and wsdl_ports(data)["FromUriHttpSoap11Endpoint"] ==
                      host + "FromUri.FromUriHttpSoap11Endpoint", "read from the service's ?wsdl: %r" % data)
                status, _, data = cmi.request("GET", "/services/Original?wsdl")
                check(wsdl_ports(data) == {
                    "SimpleStockQuoteServiceHttpSoap11Endpoint": host + "Original.OriginalHttpSoap11Endpoint",
                    "SimpleStockQuoteServiceHttpSoap12Endpoint": host + "Original.OriginalHttpSoap12Endpoint",
                    "SimpleStockQuoteServiceHttpEndpoint": host + "Original.OriginalHttpEndpoint"},
                    "useOriginalwsdl: its ports, the proxy's addresses: %r" % data)
                status, _, data = cmi.request("GET", "/services/Untouched?wsdl")
                check(wsdl_ports(data)["SimpleStockQuoteServiceHttpSoap11Endpoint"] == "http://localhost:9000/services/"
                      "SimpleStockQuoteService.SimpleStockQuoteServiceHttpSoap11Endpoint", "addresses kept: %r" % data)
                status, _, data = cmi.request("GET", "/services/Hidden?wsdl")
                check(status == 403, "exposeServiceMetadata=false: %d" % status)
                status, _, data = cmi.request("GET", "/services/Hidden.HiddenHttpSoap11Endpoint?wsdl")
                check(status == 403, "under the endpoint name too: %d" % status)
                status, _, data = cmi.request("GET", "/services/NoSoap11?wsdl")
                check("NoSoap11HttpSoap11Endpoint" not in wsdl_ports(data) and "NoSoap11HttpSoap12Endpoint" in
                      wsdl_ports(data), "no SOAP 1.1 port: %r" % data)
                status, _, data = soap11(cmi, "/services/NoSoap11", "<x/>")
                check(status == 500 and "binding" in fault_reason(data), "SOAP 1.1 refused: %d %r" % (status, data))
                status, got = facts(cmi, "POST", "/services/NoSoap11", b"<x/>")
                check(status == 200, "REST still taken: %d %r" % (status, got))
                status, _, data = cmi.request("GET", "/services/Wsdl20?wsdl")
                ep = ET.fromstring(data).find("{http://www.w3.org/ns/wsdl}service/{http://www.w3.org/ns/wsdl}endpoint")
                check(ep.get("address") == host + "Wsdl20.Wsdl20HttpSoap11Endpoint", "WSDL 2.0: %r" % data)
            finally:
                cmi.stop_clean()


def test_what_axis2_answers_before_mediation():
    files = {}
    files.update(proxy("Stopped", "<target>%s</target>" % ECHO_FACTS, 'startOnLoad="false"'))
    files.update(proxy("HttpsOnly", "<target>%s</target>" % ECHO_FACTS, 'transports="https"'))
    files.update(proxy("InboundOnly", '<target><inSequence><log level="custom"><property name="ran" value="yes"/>'
                                      '</log><respond/></inSequence></target>'
                                      '<parameter name="inbound.only">true</parameter>'))
    with Deployment(files) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = soap11(cmi, "/services/Stopped", "<x/>")
            check(status == 500 and fault_reason(data) == "The system is attempting to access an inactive service: "
                  "Stopped", "inactive: %d %r" % (status, data))
            status, headers, data = cmi.request("GET", "/services/Stopped?wsdl")
            check(headers.get("content-type") == "text/html" and b"is inactive" in data, "inactive ?wsdl: %r" % data)
            status, _, data = cmi.request("POST", "/services/HttpsOnly", envelope("<x/>", 12),
                                          {"Content-Type": "application/soap+xml"})
            check(status == 500 and fault_reason(data).startswith("The service cannot be found"),
                  "not over http, a SOAP 1.2 fault: %d %r" % (status, data))
            status, _, data = cmi.request("POST", "/services/InboundOnly", b"<x/>", {"Content-Type": "application/xml"})
            check(status == 202 and data == b"", "inbound.only: %d %r" % (status, data))
            check("ran = yes" not in cmi.log_text(), "nothing ran")
        finally:
            cmi.stop_clean()
