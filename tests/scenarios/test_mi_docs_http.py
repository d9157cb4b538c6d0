"""Examples of MI's documentation from the corpus (tests/mi-docs), run as
they are but for the backend's host and port, and checked for what the
docs say happens (issue 22).  The backend the docs use, Axis2's
SimpleStockQuoteService on port 9000, is a small SOAP server the test
starts (getQuote answers a quote, placeOrder is accepted and logged)."""
import json
import os
import re
import shutil
import tempfile
import time
from http.server import BaseHTTPRequestHandler

from harness import Cmi, check
from test_call import Backend, closed_port

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mi-docs")

QUOTE = ('<soapenv:Envelope xmlns:soapenv="%s"><soapenv:Header/><soapenv:Body>'
         '<ns:getQuoteResponse xmlns:ns="http://services.samples"><ns:return xmlns:ax21="http://services.samples/xsd">'
         '<ax21:high>-150.71</ax21:high><ax21:last>153.8</ax21:last><ax21:low>-155.27</ax21:low>'
         '<ax21:name>%s Company</ax21:name><ax21:symbol>%s</ax21:symbol></ns:return>'
         '</ns:getQuoteResponse></soapenv:Body></soapenv:Envelope>')
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSDL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "stockquote.wsdl")


class StockQuoteHandler(BaseHTTPRequestHandler):
    """Axis2's SimpleStockQuoteService as the docs use it: getQuote answers
    a quote in the request's SOAP version, placeOrder is one-way (202),
    ?wsdl gives its WSDL."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append((self.command, self.path, None, ""))
        if not self.path.endswith("?wsdl"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = open(WSDL, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        ctype = self.headers.get("Content-Type")
        self.server.seen.append((self.command, self.path, ctype, body))
        symbol = re.search(r"<(?:\w+:)?symbol>([^<]*)</", body)
        if "placeOrder" in body:
            self.send_response(202)  # Axis2's in-only operation
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        soap12 = ctype is not None and ctype.startswith("application/soap+xml")
        name = symbol.group(1) if symbol else "?"
        data = (QUOTE % (SOAP12_ENV if soap12 else SOAP11_ENV, name, name)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/soap+xml; charset=UTF-8" if soap12 else "text/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def StockQuoteService():
    return Backend(handler=StockQuoteHandler)


class Example:
    """A corpus example copied to a temporary folder, with the docs'
    localhost:9000 pointed at the test's backend (the only change)."""

    def __init__(self, name, port=None, main=None, hosts=None, files=None):
        self.src = os.path.join(CORPUS, name)
        self.port = port
        self.main = main
        # Other "host:port"s of the docs, each pointed at a test port.
        self.hosts = hosts or {}
        # Placeholder paths of the docs ("/path/to/x.wsdl"), each pointed
        # at a file of the tests.
        self.files = files or {}

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="cmi-midocs-")
        for root, _, files in os.walk(self.src):
            for f in files:
                if not f.endswith(".xml"):
                    continue
                rel = os.path.relpath(os.path.join(root, f), self.src)
                os.makedirs(os.path.join(self.dir, os.path.dirname(rel)), exist_ok=True)
                text = open(os.path.join(root, f), encoding="utf-8").read()
                if self.port is not None:
                    text = text.replace("localhost:9000", "127.0.0.1:%d" % self.port)
                for host, port in self.hosts.items():
                    text = text.replace(host, "127.0.0.1:%d" % port)
                for path, real in self.files.items():
                    text = text.replace(path, real)
                with open(os.path.join(self.dir, rel), "w", encoding="utf-8") as out:
                    out.write(text)
        if self.main is not None:
            # A wrapped snippet (sequences/snippet.xml) is driven by the
            # test's own main sequence, in this copy only (never the corpus).
            os.makedirs(os.path.join(self.dir, "sequences"), exist_ok=True)
            with open(os.path.join(self.dir, "sequences", "main.xml"), "w", encoding="utf-8") as out:
                out.write('<sequence xmlns="http://ws.apache.org/ns/synapse" name="main">%s</sequence>' % self.main)
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def quote_of(cmi, b, path, status=200):
    """GETs path and checks the IBM quote came back with that status, the
    getQuote having gone to the service with POST (the flow built it on a
    GET: an address endpoint is a service); returns what was sent."""
    got, _, data = cmi.request("GET", path)
    check(got == status and b"<ax21:name>IBM Company</ax21:name>" in data and b"<ax21:symbol>IBM</ax21:symbol>"
          in data, "the IBM quote: %d %r" % (got, data))
    method, _, _, body = b.server.seen[-1]
    check(method == "POST" and "<m0:symbol>IBM</m0:symbol>" in body, "getQuote sent: %r" % (b.server.seen[-1],))
    return body


def order_of(cmi, b):
    """POSTs the docs' placeorder.xml to /stockquote/order/ (OUT_ONLY with
    FORCE_SC_ACCEPTED): 202 at once, then the order reaches the service."""
    before = len(b.server.seen)
    order = (b'<placeOrder xmlns="http://services.samples"><order><price>50</price><quantity>10</quantity>'
             b'<symbol>IBM</symbol></order></placeOrder>')
    status, _, data = cmi.request("POST", "/stockquote/order/", order, {"Content-type": "application/xml"})
    check(status == 202, "placeOrder: %d %r" % (status, data))
    deadline = time.monotonic() + 5
    while len(b.server.seen) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    check(len(b.server.seen) == before + 1 and b.server.seen[-1][0] == "POST" and "<symbol>IBM</symbol>"
          in b.server.seen[-1][3], "the order reached the service: %r" % b.server.seen[before:])


def compact(xml):
    return re.sub(r">\s+<", "><", xml.strip())


def test_handling_non_matching_resources():
    # learn/examples/rest-api-examples/handling-non-matching-resources.md:
    # a request for a resource the API lacks runs _resource_mismatch_handler_,
    # which answers 404 with the docs' fault (RESPONSE, then <send/>).
    with Example("non_matching_resources") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("GET", "/jaxrs/customers-wrong/123")
            check(status == 404, "status %d %r" % (status, data))
            check(compact(data.decode()) == '<tp:fault xmlns:tp="http://test.com"><tp:code>404</tp:code>'
                  '<tp:type>Status report</tp:type><tp:message>Not Found</tp:message><tp:description>The requested '
                  'resource (//customers-wrong/123) is not available.</tp:description></tp:fault>',
                  "the docs' answer: %r" % data)
            status, _, data = cmi.request("GET", "/nothing/here")
            check(status == 404 and b"no API matches" in data, "no API: still cmi's 404: %d %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_exposing_a_soap_endpoint_as_a_rest_api():
    # learn/examples/rest-api-examples/enabling-rest-to-soap.md: GET
    # /stockquote/view/IBM returns the quote; POST /stockquote/order/ a 202.
    with StockQuoteService() as b, Example("rest_to_soap", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            quote_of(cmi, b, "/stockquote/view/IBM")
            quote_of(cmi, b, "/stockquote/view/IBM?param1=value1&param2=value2")
            order_of(cmi, b)
        finally:
            cmi.stop_clean()


def test_converting_json_to_soap_with_payloadfactory():
    # learn/examples/message-transformation-examples/json-to-soap-conversion.md:
    # the JSON order reaches the service as a SOAP placeOrder ("Accepted
    # order #1 for : 4 stocks of IBM at $ 3.141593"); the client gets 202.
    with StockQuoteService() as b, Example("json_to_soap_payloadfactory", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            body = json.dumps({"placeOrder": {"order": {"symbol": "IBM", "price": "3.141593E0", "quantity": "4"}}})
            status, _, data = cmi.request("POST", "/stockorder_api", body.encode(),
                                          {"Content-Type": "application/json", "SoapAction": "urn:placeOrder"})
            check(status == 202, "status %d %r" % (status, data))
            sent = b.server.seen[-1][3]
            check(all(s in sent for s in ("<xsd:symbol>IBM</xsd:symbol>", "<xsd:price>3.141593E0</xsd:price>",
                                          "<xsd:quantity>4</xsd:quantity>", "<ser:placeOrder>")),
                  "the SOAP order: %r" % sent)
        finally:
            cmi.stop_clean()


SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
SYNAPSE = "http://ws.apache.org/ns/synapse"


def soap(body, header=""):
    return ('<soapenv:Envelope xmlns:soapenv="%s">%s<soapenv:Body>%s</soapenv:Body></soapenv:Envelope>'
            % (SOAPENV, "<soapenv:Header>%s</soapenv:Header>" % header if header else "", body)).encode()


def envelope(data):
    import xml.etree.ElementTree as ET
    return ET.fromstring(data)


class MenuHandler(BaseHTTPRequestHandler):
    """A stand-in for the docs' pizza shop servlet: records what it gets."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append((self.command, self.path))
        data = b'{"menu": ["pan"]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def MenuService():
    return Backend(handler=MenuHandler)


def test_payloadfactory_literal_value():
    # reference/mediators/payloadfactory-mediator.md (Adding a literal
    # value): POST /payload <pet>... -> {"newValue": "<pet>...</pet>"}.
    with Example("payloadfactory_literal_api") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, headers, data = cmi.request("POST", "/payload", b"<pet><name>John</name><age>5</age></pet>",
                                                {"Content-Type": "application/xml"})
            check(status == 200 and headers.get("content-type", "").startswith("application/json"),
                  "status %d %r %r" % (status, headers, data))
            check(json.loads(data) == {"newValue": "<pet><name>John</name><age>5</age></pet>"}, "answer %r" % data)
        finally:
            cmi.stop_clean()


def test_payloadfactory_default_template_json():
    # reference/mediators/payloadfactory-mediator.md (Default template):
    # {"AddInteger": {"Arg1": <grocery.arg1> "Arg2": <grocery.arg2>}}, the
    # docs' template as it is (no comma between Arg1 and Arg2).  The
    # snippet runs from main, then <respond/> (added) shows the payload.
    with Example("payloadfactory_default_json", main='<sequence key="snippet"/><respond/>') as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/add", b'{"grocery": {"arg1": 10, "arg2": 20}}',
                                          {"Content-Type": "application/json"})
            check(status == 200, "status %d %r" % (status, data))
            check(re.sub(r"\s+", " ", data.decode().strip()) == '{ "AddInteger": { "Arg1": 10 "Arg2": 20 } }',
                  "answer %r" % data)
        finally:
            cmi.stop_clean()


def test_header_complex_xml():
    # reference/mediators/header-mediator.md (complex XML): the embedded
    # XML becomes a SOAP header.  <respond/> (added) returns the envelope.
    with Example("header_complex_xml", main='<sequence key="snippet"/><respond/>') as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/h", soap("<a>1</a>"), {"Content-Type": "text/xml"})
            check(status == 200, "status %d %r" % (status, data))
            env = envelope(data)
            hdr = env.find("{%s}Header/{http://org.synapse.example}complexHeader" % SOAPENV)
            check(hdr is not None, "no complexHeader: %r" % data)
            props = [(p.get("key"), p.get("value")) for p in hdr.findall("{%s}property" % SYNAPSE)]
            check(props == [("k1", "v1"), ("k2", "v2")], "its content: %r" % data)
            check(env.find("{%s}Body/a" % SOAPENV) is not None, "the body kept: %r" % data)
        finally:
            cmi.stop_clean()


def test_header_dynamic_soap():
    # reference/mediators/header-mediator.md (dynamic SOAP header): the
    # body's sym:symbol becomes the SOAP header m:header1.  <respond/> added.
    with Example("header_dynamic_soap", main='<sequence key="snippet"/><respond/>') as d:
        cmi = Cmi(d, workers=1).start()
        try:
            body = ('<m0:getQuote xmlns:m0="http://services.samples"><m0:request>'
                    '<s:symbol xmlns:s="http://services.samples/xsd">WSO2</s:symbol></m0:request></m0:getQuote>')
            status, _, data = cmi.request("POST", "/h", soap(body), {"Content-Type": "text/xml"})
            check(status == 200, "status %d %r" % (status, data))
            h = envelope(data).findall("{%s}Header/{http://org.synapse.example}header1" % SOAPENV)
            check(len(h) == 1 and h[0].text == "WSO2", "header1: %r" % data)
        finally:
            cmi.stop_clean()


def test_switch_sets_variable():
    # reference/mediators/switch-mediator.md: IBM and MSFT match their
    # cases, anything else the default ("Normal Stock - <symbol>").  The
    # variable is shown by a payloadFactory and <respond/> (added).
    show = '<payloadFactory media-type="json"><format>{"symbol": "${vars.symbol}"}</format></payloadFactory><respond/>'
    with Example("switch_variable_snippet", main='<sequence key="snippet"/>' + show) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for sym, want in (("IBM", "Great stock - IBM"), ("MSFT", "Are you sure? - MSFT"),
                              ("WSO2", "Normal Stock - WSO2")):
                status, _, data = cmi.request("POST", "/s", json.dumps({"request": {"symbol": sym}}).encode(),
                                              {"Content-Type": "application/json"})
                check(status == 200 and json.loads(data) == {"symbol": want}, "%s: %d %r" % (sym, status, data))
        finally:
            cmi.stop_clean()


def test_variable_remove():
    # reference/mediators/variable-mediator.md (remove): sessionToken is
    # gone after the snippet.  main (added) sets it first and logs whether
    # it exists before and after, then <respond/>.
    main = ('<variable name="sessionToken" type="STRING" value="abc"/>'
            '<log level="custom"><property name="before" expression="${exists(vars.sessionToken)}"/></log>'
            '<sequence key="snippet"/>'
            '<log level="custom"><property name="after" expression="${exists(vars.sessionToken)}"/></log><respond/>')
    with Example("variable_remove", main=main) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/v", b"{}", {"Content-Type": "application/json"})
            check(status == 200, "status %d %r" % (status, data))
            cmi.wait_log(r"\bbefore = true$", 5)
            cmi.wait_log(r"\bafter = false$", 5)
        finally:
            cmi.stop_clean()


def test_variable_set_expression():
    # reference/mediators/variable-mediator.md (set with an expression):
    # userDataObject (JSON) = payload.user.data, userId (INTEGER) =
    # payload.user.id.  Shown by a payloadFactory and <respond/> (added).
    show = ('<payloadFactory media-type="json"><format>{"data": ${vars.userDataObject}, "id": ${vars.userId}}'
            '</format></payloadFactory><respond/>')
    with Example("variable_set_expression", main='<sequence key="snippet"/>' + show) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/v", b'{"user": {"id": "42", "data": {"a": [1, 2], "b": "x"}}}',
                                          {"Content-Type": "application/json"})
            check(status == 200, "status %d %r" % (status, data))
            check(json.loads(data) == {"data": {"a": [1, 2], "b": "x"}, "id": 42}, "answer %r" % data)
        finally:
            cmi.stop_clean()


def test_makefault_version_mismatch():
    # reference/mediators/fault-mediator.md (Example 1): a SOAP 1.1 fault,
    # code VersionMismatch, reason "test message " (the XML's value).
    # <respond/> (added) returns it.
    with Example("fault_makefault_snippet", main='<sequence key="snippet"/><respond/>') as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/f", soap("<a/>"), {"Content-Type": "text/xml"})
            fault = envelope(data).find("{%s}Body/{%s}Fault" % (SOAPENV, SOAPENV))
            check(fault is not None and fault.find("{%s}Body/a" % SOAPENV) is None, "a fault: %d %r" % (status, data))
            code = fault.findtext("faultcode", "")
            prefix = code.split(":")[0]
            check(code.endswith(":VersionMismatch") and ('xmlns:%s="%s"' % (prefix, SOAPENV)) in data.decode(),
                  "faultcode %r in %r" % (code, data))
            check(fault.findtext("faultstring") == "test message ", "faultstring: %r" % data)
        finally:
            cmi.stop_clean()


def test_http_endpoint_uri_template():
    # learn/examples/endpoint-examples/using-http-endpoints.md (Example 1):
    # with the docs' uri.var.* set, HTTPEndpoint calls
    # /PizzaShopServlet/restapi/PizzaWS/menu?category=pizza&type=pan.  The
    # page's <inSequence> (its properties, then a call of the endpoint) is
    # the test's main sequence; localhost:8080 is the test's backend.
    main = ('<property name="uri.var.servicepath" value="PizzaShopServlet"/>'
            '<property name="uri.var.servicename" value="PizzaWS"/>'
            '<property name="uri.var.category" value="pizza"/>'
            '<property name="uri.var.pizzaType" value="pan"/>'
            '<call><endpoint key="HTTPEndpoint"/></call><respond/>')
    with MenuService() as b:
        with Example("http_endpoint_uri_template", main=main, hosts={"localhost:8080": b.port}) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                status, _, data = cmi.request("GET", "/menu")
                check(status == 200 and json.loads(data) == {"menu": ["pan"]}, "status %d %r" % (status, data))
                check(b.server.seen == [("GET", "/PizzaShopServlet/restapi/PizzaWS/menu?category=pizza&type=pan")],
                      "the backend got %r" % b.server.seen)
            finally:
                cmi.stop_clean()


def test_endpoint_error_codes_connection_refused_stays_active():
    # learn/examples/endpoint-examples/endpoint-error-handling.md (Example
    # 1): 101503 (connection failed; localhost:123 is closed) is in neither
    # list, so the endpoint stays Active: every call tries the backend again
    # and fails with 101503, never a suspended endpoint.
    with Example("endpoint_error_codes") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for i in range(4):
                status, _, data = cmi.request("GET", "/test")
                check(status == 500 and json.loads(data)["error"]["code"] == 101503, "call %d: %d %r" % (i, status, data))
            check(not re.search(r"(?i)suspend", cmi.log_text()), "a suspension in the log:\n%s" % cmi.log_text())
        finally:
            cmi.stop_clean()


def test_failover_single_address_marks_suspended():
    # learn/examples/endpoint-examples/using-failover-endpoints.md (Example
    # 1): the unreachable endpoint logs ERROR_CODE 101503 "Error connecting
    # to the back end" and Sample_First is marked SUSPENDED.
    with Example("failover_single_address") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("GET", "/test")
            check(status == 500, "status %d %r" % (status, data))
            cmi.wait_log(r"WARN .*101503 Error connecting to the back end", 5)
            cmi.wait_log(r"WARN .*endpoint Sample_First suspended", 5)
        finally:
            cmi.stop_clean()



def test_filter_on_the_soap_action():
    # reference/mediators/filter-mediator.md ("then and else"): the Action
    # property (the request's SOAPAction) picks the branch.
    with Example("filter_then_else_log", main='<sequence key="snippet"/><respond/>') as d:
        cmi = Cmi(d, workers=1).start()
        try:
            soap = (b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
                    b'<getBusNo/></soapenv:Body></soapenv:Envelope>')
            status, _, _ = cmi.request("POST", "/bus", soap, {"Content-Type": "text/xml",
                                                              "SOAPAction": '"urn:getBusNo"'})
            check(status == 200, "status %d" % status)
            cmi.wait_log(r"service = Bus Services is called", 5)
            status, _, _ = cmi.request("POST", "/train", soap, {"Content-Type": "text/xml", "SOAPAction": "urn:getTrain"})
            cmi.wait_log(r"service = Train Service is called", 5)
            check(cmi.log_text().count("Bus Services is called") == 1, "one bus, one train")
        finally:
            cmi.stop_clean()


def test_endpoint_that_never_suspends():
    # learn/examples/endpoint-examples/endpoint-error-handling.md (no
    # suspension): errorCodes -1 everywhere, "you will not observe any
    # endpoint suspended logs" however often the backend fails.
    with Example("endpoint_no_suspend", port=closed_port()) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for i in range(4):
                status, _, data = cmi.request("GET", "/test")
                check(status == 500 and json.loads(data)["error"]["code"] == 101503, "call %d: %d %r" % (i, status, data))
            check(not re.search(r"(?i)suspend", cmi.log_text()), "a suspension in the log:\n%s" % cmi.log_text())
        finally:
            cmi.stop_clean()


def test_rest_api_with_send_and_out_sequence():
    # learn/examples/rest-api-examples/introduction-rest-api.md: <send> to a
    # format="soap11" address, <outSequence><send/></outSequence>: the quote
    # comes back; the OUT_ONLY order resource answers 202.
    with StockQuoteService() as b, Example("rest_api_intro", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            body = quote_of(cmi, b, "/stockquote/view/IBM")
            check(b.server.seen[-1][2].startswith("text/xml") and "Envelope" in body,
                  "format soap11 is a SOAP request: %r" % (b.server.seen[-1],))
            order_of(cmi, b)
        finally:
            cmi.stop_clean()


def test_http_status_code_set_in_the_out_sequence():
    # learn/examples/rest-api-examples/setting-http-status-codes.md: the
    # outSequence sets HTTP_SC 201; the client gets 201 and the quote.
    with StockQuoteService() as b, Example("http_status_codes", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            quote_of(cmi, b, "/stockquote/view/IBM", status=201)
        finally:
            cmi.stop_clean()


def test_query_parameters_in_the_outgoing_payload():
    # learn/examples/rest-api-examples/using-query-parameters.md (outgoing):
    # the query parameters go into the getQuote; the IBM quote comes back.
    with StockQuoteService() as b, Example("query_params_outgoing", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            body = quote_of(cmi, b, "/stockquote/view/IBM?param1=value1&param2=value2")
            check(all(s in body for s in ("<m0:symbol>IBM</m0:symbol>", "<m0:customerName>value1</m0:customerName>",
                                          "<m0:customerId>value2</m0:customerId>")), "getQuote sent: %r" % body)
        finally:
            cmi.stop_clean()


def test_sequence_template_default_value():
    # learn/examples/template-examples/using-sequence-templates.md (Example
    # 2): the API calls sequence-temp without a value, and the template logs
    # its default, greeting = Welcome; the respond answers the request.
    with Example("sequence_template_default") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/test", b'{"a": 1}', {"Content-Type": "application/json"})
            check(status == 200 and json.loads(data) == {"a": 1}, "status %d %r" % (status, data))
            cmi.wait_log(r"\[api:test\] greeting = Welcome$")
        finally:
            cmi.stop_clean()


class MockyHandler(BaseHTTPRequestHandler):
    """run.mocky.io's two mocks of the endpoint template page: both answer
    {"symbol": "foo"}."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append((self.command, self.path))
        data = b'{"symbol": "foo"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_endpoint_template_instances_in_an_api():
    # learn/examples/template-examples/using-endpoint-templates.md: each
    # resource calls an endpoint built from ep_template with its own uri;
    # "curl http://localhost:8290/test/bar" answers {"symbol": "foo"} (the
    # API's version-type="context" has no {version} in its context, so MI
    # serves it at /test, as the docs' curl does).
    with Backend(handler=MockyHandler) as b, Example("endpoint_template_api", hosts={"run.mocky.io": b.port}) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for path, mock in (("/test/bar", "c72a5cfd-871b-43fc-8202-54fa18097341"),
                               ("/test/foo", "8ca6aa42-ee0a-47a8-8007-e93abbb95b87")):
                status, _, data = cmi.request("GET", path)
                check(status == 200 and json.loads(data) == {"symbol": "foo"}, "%s: %d %r" % (path, status, data))
                check(b.server.seen[-1] == ("GET", "/v3/" + mock), "%s reached %r" % (path, b.server.seen[-1]))
        finally:
            cmi.stop_clean()


def test_header_to_and_a_default_endpoint():
    # reference/mediators/header-mediator.md: the To header computed from
    # the epr property, and <endpoint><default/></endpoint> sends the
    # message there (localhost:9764 is the test's backend).  Without a To
    # set by the flow, a default endpoint is an error, never the request's
    # own address.
    main = '<property name="epr" value="IBM"/><sequence key="snippet"/><respond/>'
    with Backend(handler=MockyHandler) as b, Example("header_to_default_endpoint", main=main,
                                                     hosts={"localhost:9764": b.port}) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("GET", "/anything")
            check(status == 200 and json.loads(data) == {"symbol": "foo"}, "%d %r" % (status, data))
            check(b.server.seen == [("GET", "/services/Axis2SampleService_IBM")], "reached %r" % b.server.seen)
        finally:
            cmi.stop_clean()


def test_throw_error_in_an_api():
    # reference/mediators/throw-error-mediator.md: without "required" in the
    # payload, throwError fails the flow and the fault sequence logs
    # ERROR_CODE = PAYLOAD_ERROR, ERROR_MESSAGE = Required field does not exist
    # (then drops: 202); with it, the full log and the payload back.
    with Example("throw_error_api") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/testThrowError", b'{"Hello": "World"}',
                                          {"Content-Type": "application/json"})
            check(status == 202 and data == b"", "dropped by the fault sequence: %d %r" % (status, data))
            cmi.wait_log(r"\[api:TestThrowErrorMediatorAPI\] ERROR_CODE = PAYLOAD_ERROR, "
                         r"ERROR_MESSAGE = Required field does not exist$")
            status, _, data = cmi.request("POST", "/testThrowError", b'{"required": 1}',
                                          {"Content-Type": "application/json"})
            check(status == 200 and json.loads(data) == {"required": 1}, "passed: %d %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_json_to_soap_with_xslt():
    # learn/examples/message-transformation-examples/json-to-soap-conversion.md
    # (XSLT): the stylesheet of local entry in_transform puts the JSON
    # request's elements in the services.samples namespace, enrich makes
    # //m0:getQuote the body, the SOAP 1.1 endpoint answers the quote, and
    # the client gets it as JSON.
    with StockQuoteService() as b, Example("json_to_soap_xslt", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, headers, data = cmi.request("POST", "/stockorder_api", b'{"getQuote":{"request":{"symbol":"IBM"}}}',
                                                {"Content-Type": "application/json", "SoapAction": "urn:getQuote"})
            check(status == 200 and headers.get("content-type", "").startswith("application/json"),
                  "JSON back: %d %r %r" % (status, headers, data))
            check("getQuoteResponse" in json.loads(data), "the response: %r (sent %r)" % (data, b.server.seen))
            got = json.loads(data)["getQuoteResponse"]["return"]
            check(got["name"] == "IBM Company" and got["symbol"] == "IBM", "the quote: %r" % got)
            sent = b.server.seen[-1]
            check(sent[2].startswith("text/xml") and re.search(r"<(\w+:)?getQuote xmlns(:\w+)?=\"http://services.samples\"",
                                                               sent[3]) and ">IBM</" in sent[3],
                  "a getQuote in services.samples went to the service: %r" % (sent,))
        finally:
            cmi.stop_clean()


def test_securing_a_rest_api_with_basic_auth():
    # learn/examples/rest-api-examples/securing-rest-apis.md: without
    # credentials "you will receive the response 401 Unauthorized"; with the
    # docs' `Authorization: Basic YWRtaW46YWRtaW4=` (admin:admin, a user of
    # the user store: here cmi's <users>, its hash made by openssl) the quote.
    import subprocess
    with StockQuoteService() as b, Example("securing_rest_api_basic_auth", b.port) as d:
        config = os.path.join(d, "..", os.path.basename(d) + "-cmi.xml")
        sha = subprocess.run(["openssl", "passwd", "-6", "admin"], capture_output=True, text=True,
                             check=True).stdout.strip()
        with open(config, "w") as f:
            f.write('<cmi><users><user name="admin" password="%s"/></users></cmi>' % sha)
        cmi = Cmi(d, workers=1, args=["--config", config]).start()
        try:
            status, headers, data = cmi.request("GET", "/stockquote/view/IBM")
            check(status == 401 and headers.get("www-authenticate") == 'Basic realm="WSO2 EI"',
                  "no credentials: %d %s" % (status, headers))
            check(len(b.server.seen) == 0, "the backend was called for a refused request")
            got, _, data = cmi.request("GET", "/stockquote/view/IBM", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
            check(got == 200 and b"<ns:getQuoteResponse" in data and b"<ax21:symbol>IBM</ax21:symbol>" in data,
                  "with admin:admin: %d %r" % (got, data))
        finally:
            cmi.stop_clean()
            os.unlink(config)


def test_synapse_expression_secret():
    # reference/synapse-properties/synapse-expressions.md (Fetch secrets):
    # ${secret('mysqlpassword')} gives the variable the secret of that alias;
    # here from cmi's secrets file.  Shown by a payloadFactory (added).
    show = '<payloadFactory media-type="json"><format>{"password": "${vars.password}"}</format></payloadFactory><respond/>'
    with Example("synexpr_secret_variable", main='<sequence key="snippet"/>' + show) as d:
        secrets = d + ".secrets"
        with open(secrets, "w") as f:
            f.write("mysqlpassword = my-sql-pw\n")
        os.chmod(secrets, 0o600)
        with open(d + ".xml", "w") as f:
            f.write('<cmi><secrets file="%s"/></cmi>' % secrets)
        cmi = Cmi(d, workers=1, args=["--config", d + ".xml"]).start()
        try:
            status, _, data = cmi.request("GET", "/anything")
            check(status == 200 and json.loads(data) == {"password": "my-sql-pw"}, "answer %d %r" % (status, data))
        finally:
            cmi.stop_clean()
            os.unlink(secrets)
            os.unlink(d + ".xml")
