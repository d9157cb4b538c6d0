"""The proxy services of MI's documentation from the corpus (tests/mi-docs),
run as they are but for the backend's host and port, and checked for what
the docs say happens (issue 23).  The backend is the stand-in of Axis2's
SimpleStockQuoteService of test_mi_docs_http; the SOAP clients are
written here."""
import json
import re
import socket
import xml.etree.ElementTree as ET

from harness import Cmi, check
from test_call import closed_port
from test_mi_docs_http import SOAP11_ENV, SOAP12_ENV, WSDL, Example, StockQuoteService, compact

SER = "http://services.samples"
XSD = "http://services.samples/xsd"


def envelope(body, version=11):
    """A request envelope as the docs' requests write it (an empty Header)."""
    ns = SOAP11_ENV if version == 11 else SOAP12_ENV
    return ('<soapenv:Envelope xmlns:soapenv="%s"><soapenv:Header/><soapenv:Body>%s</soapenv:Body>'
            '</soapenv:Envelope>' % (ns, body)).encode()


def get_quote(symbol, prefix="m0", symbol_ns=SER):
    """The docs' getQuote request body (the symbol's namespace differs
    between pages: services.samples or services.samples/xsd)."""
    if symbol_ns == SER:
        return ('<%s:getQuote xmlns:%s="%s"><%s:request><%s:symbol>%s</%s:symbol></%s:request></%s:getQuote>'
                % (prefix, prefix, SER, prefix, prefix, symbol, prefix, prefix, prefix))
    return ('<ser:getQuote xmlns:ser="%s" xmlns:xsd="%s"><ser:request><xsd:symbol>%s</xsd:symbol></ser:request>'
            '</ser:getQuote>' % (SER, XSD, symbol))


def soap11(cmi, path, body, action="urn:getQuote", ctype="text/xml; charset=UTF-8"):
    return cmi.request("POST", path, envelope(body), {"Content-Type": ctype, "SOAPAction": '"%s"' % action})


def is_quote(data, symbol, version=11):
    """A getQuoteResponse for symbol in a SOAP envelope of that version."""
    try:
        env = ET.fromstring(data)
    except ET.ParseError:
        return False
    ns = SOAP11_ENV if version == 11 else SOAP12_ENV
    name = env.find("{%s}Body/{%s}getQuoteResponse/{%s}return/{%s}name" % (ns, SER, SER, XSD))
    return env.tag == "{%s}Envelope" % ns and name is not None and name.text == "%s Company" % symbol


def test_switch_logs_the_greeting():
    # learn/examples/routing-examples/... (HelloProxy): the switch on
    # //lang[1] logs GREETING_MESSAGE = Hello; the flow drops the message.
    with Example("hello_proxy_switch") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/services/HelloProxy",
                                          b"<body><lang>English</lang><lang>French</lang><lang>Japanese</lang></body>",
                                          {"Content-Type": "application/xml"})
            check(status == 202 and data == b"", "dropped: %d %r" % (status, data))
            cmi.wait_log(r"\[proxy:HelloProxy\] GREETING_MESSAGE = Hello$")
            check("Bonjour" not in cmi.log_text(), "only the first lang counts")
        finally:
            cmi.stop_clean()


def test_call_template_logs_the_greeting():
    # learn/examples/template-examples/using-sequence-templates.md (Example
    # 1): the switch calls Hello_Logger with message "Hello" for the first
    # lang, and the template logs GREETING_MESSAGE = Hello; the flow drops it.
    with Example("sequence_template_call") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for lang, greeting in (("English", "Hello"), ("French", "Bonjour"), ("Japanese", "Konnichiwa")):
                mark = cmi.log_mark()
                status, _, data = cmi.request("POST", "/services/HelloProxy",
                                              ("<body><lang>%s</lang><lang>English</lang></body>" % lang).encode(),
                                              {"Content-Type": "application/xml"})
                check(status == 202 and data == b"", "dropped: %d %r" % (status, data))
                cmi.wait_log(r"\[proxy:HelloProxy\] GREETING_MESSAGE = %s$" % greeting, start=mark)
            # No match: the <default> case calls the template without the
            # parameter, whose value is then empty.
            mark = cmi.log_mark()
            cmi.request("POST", "/services/HelloProxy", b"<body><lang>Welsh</lang></body>",
                        {"Content-Type": "application/xml"})
            cmi.wait_log(r"\[proxy:HelloProxy\] GREETING_MESSAGE = $", start=mark)
        finally:
            cmi.stop_clean()


def test_local_registry_sequence_and_endpoint():
    # learn/examples/registry-examples/local-registry-entries.md: MainProxy
    # runs the stockquote sequence (custom log with the direction property)
    # which calls the "simple" endpoint; the quote comes back.
    with StockQuoteService() as b, Example("local_registry_entries", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, headers, data = soap11(cmi, "/services/MainProxy", get_quote("IBM", "ser"))
            check(status == 200 and is_quote(data, "IBM"), "the quote: %d %r" % (status, data))
            cmi.wait_log(r"Text = Sending quote request, direction = incoming$")
            check(b.server.seen[-1][0] == "POST" and "<ser:symbol>IBM</ser:symbol>" in b.server.seen[-1][3],
                  "the request reached the service: %r" % (b.server.seen[-1],))
        finally:
            cmi.stop_clean()


def test_sequences_broken_down_behind_a_proxy():
    # learn/examples/sequence-examples/using-multiple-sequences.md: the
    # proxy's inSequence is a key; the sequences call the example's own API
    # (localhost:8290) and transform the quote into <Information>.
    port = closed_port()
    with StockQuoteService() as b, Example("multiple_sequences", b.port, hosts={"localhost:8290": port}) as d:
        cmi = Cmi(d, workers=2, args=("--http-port", str(port))).start()
        try:
            body = ('<placeOrder xmlns="http://org.apache.synapse/xsd"><order><price>50</price>'
                    '<quantity>10</quantity><symbol>IBM</symbol></order></placeOrder>')
            path = "/services/SequenceBreakdownSampleProxy.SequenceBreakdownSampleProxyHttpSoap11Endpoint"
            status, _, data = soap11(cmi, path, body, action="urn:mediate")
            check(status == 200, "status %d %r" % (status, data))
            env = ET.fromstring(data)
            info = env.find("{%s}Body/Information" % SOAP11_ENV)
            check(info is not None and info.findtext("Name") == "IBM Company" and info.findtext("Last") == "153.8",
                  "the docs' <Information> in a SOAP envelope: %r" % data)
            for line in ("Sequence = StockQuoteSeq, Description = Request recieved",
                         "Sequence = CallStockQuoteSeq, Description = Calling IBM endpoint",
                         "Sequence = TransformAndRespondSeq, Description = Responding back"):
                cmi.wait_log(re.escape(line))
        finally:
            cmi.stop_clean()


STATION = ('<SpaceX_LaunchPads><Station><Name>Kennedy Space Center Historic Launch Complex 39A</Name>'
           '<Short_Name>KSC LC 39A</Short_Name><Launches><Attempts>18</Attempts><Successful>18</Successful>'
           '</Launches><Region>Florida</Region><Latitude>28.6080585</Latitude><Longitude>-80.6039558</Longitude>'
           '<WIKI_Link>https://en.wikipedia.org/wiki/Kennedy_Space_Center_Launch_Complex_39#Launch_Pad_39A</WIKI_Link>'
           '</Station></SpaceX_LaunchPads>')


def test_pox_to_json_with_message_type():
    # learn/examples/message-transformation-examples/pox-to-json-conversion.md:
    # messageType application/json, then respond: the SOAP request as JSON.
    with Example("pox_to_json_messagetype") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, headers, data = cmi.request("POST", "/services/POX_To_JSON_Convert_Msgtype_Proxy",
                                                envelope(STATION), {"Content-Type": "text/xml"})
            check(status == 200 and headers.get("content-type", "").startswith("application/json"),
                  "JSON back: %d %r" % (status, headers))
            got = json.loads(data)
            station = got["Envelope"]["Body"]["SpaceX_LaunchPads"]["Station"]
            check(got["Envelope"]["Header"] is None and station["Short_Name"] == "KSC LC 39A" and
                  station["Launches"] == {"Attempts": 18, "Successful": 18} and station["Latitude"] == 28.6080585
                  and station["Longitude"] == -80.6039558, "the docs' JSON: %r" % got)
        finally:
            cmi.stop_clean()


def test_pox_to_json_with_payloadfactory():
    # The same page, second example: a JSON payloadFactory over the XML.
    with Example("pox_to_json_payloadfactory") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/services/POX_To_JSON_Convert_PayloadFactory_Proxy",
                                          STATION.encode(), {"Content-Type": "text/xml"})
            check(status == 200, "status %d %r" % (status, data))
            check(json.loads(data) == {
                "name": "KSC LC 39A",
                "location": {"region": "Florida", "latitude": 28.6080585, "longitude": -80.6039558},
                "attempted_launches": 18, "successful_launches": 18,
                "wikipedia": "https://en.wikipedia.org/wiki/Kennedy_Space_Center_Launch_Complex_39#Launch_Pad_39A",
                "site_name_long": "Kennedy Space Center Historic Launch Complex 39A"}, "the docs' JSON: %r" % data)
        finally:
            cmi.stop_clean()


def test_routing_on_a_header():
    # learn/examples/routing-examples/routing-based-on-headers.md
    with StockQuoteService() as b, Example("routing_based_on_headers", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            for custom, want_json in (("application/json", True), ("text/xml", False)):
                status, headers, data = cmi.request(
                    "POST", "/services/HeaderBasedRoutingProxy", envelope(get_quote("IBM", symbol_ns=XSD)),
                    {"Content-Type": "text/xml;charset=UTF-8", "CustomHeader": custom, "SOAPAction": "urn:getQuote"})
                check(status == 200, "%s: %d %r" % (custom, status, data))
                if want_json:
                    got = json.loads(data)
                    check(got["Envelope"]["Body"]["getQuoteResponse"]["return"]["symbol"] == "IBM",
                          "a JSON response: %r" % got)
                else:
                    check(is_quote(data, "IBM"), "an XML response: %r" % data)
            cmi.wait_log(r"'CustomHeader' = application/json$")
            cmi.wait_log(r"'CustomHeader' = text/xml$")
        finally:
            cmi.stop_clean()


def test_routing_on_the_payload():
    # learn/examples/routing-examples/routing-based-on-payloads.md
    with StockQuoteService() as b, Example("routing_based_on_payloads", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            path = "/services/ContentBasedRoutingProxy"
            status, _, data = soap11(cmi, path, get_quote("IBM", symbol_ns=XSD))
            check(status == 200 and json.loads(data)["Envelope"]["Body"]["getQuoteResponse"]["return"]["symbol"]
                  == "IBM", "IBM: JSON: %d %r" % (status, data))
            status, _, data = soap11(cmi, path, get_quote("MSFT", symbol_ns=XSD))
            check(status == 200 and is_quote(data, "MSFT"), "MSFT: XML: %d %r" % (status, data))
            seen = len(b.server.seen)
            soap11(cmi, path, get_quote("XYZ", symbol_ns=XSD))
            cmi.wait_log(r"Error = Invalid request for symbol - XYZ$")
            check(len(b.server.seen) == seen, "nothing sent for XYZ")
        finally:
            cmi.stop_clean()


def wsdl_addresses(data):
    root = ET.fromstring(data)
    out = {}
    for port in root.iter("{http://schemas.xmlsoap.org/wsdl/}port"):
        for addr in port:
            out[port.get("name")] = addr.get("location")
    return out


def test_simple_proxy_publishes_its_wsdl_and_proxies_soap():
    # learn/examples/proxy-service-examples/introduction-to-proxy-services.md:
    # ?wsdl shows the published WSDL "updated to reflect the proxy service
    # EPR"; SOAP clients get the service's answers through the proxy.
    with StockQuoteService() as b, Example("simple_proxy_service", b.port,
                                           files={"/path/to/sample_proxy_3.wsdl": WSDL}) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, headers, data = cmi.request("GET", "/services/StockQuoteProxy?wsdl")
            check(status == 200 and headers.get("content-type", "").startswith("text/xml"),
                  "the WSDL: %d %r" % (status, headers))
            # As Axis2 serves it: the published types, messages and portType,
            # the bindings and ports made for the proxy at this machine's
            # host name and the listener's port.
            base = "http://%s:%d/services/StockQuoteProxy.StockQuoteProxy" % (socket.gethostname(), cmi.port)
            check(wsdl_addresses(data) == {
                "StockQuoteProxyHttpSoap11Endpoint": base + "HttpSoap11Endpoint",
                "StockQuoteProxyHttpSoap12Endpoint": base + "HttpSoap12Endpoint",
                "StockQuoteProxyHttpEndpoint": base + "HttpEndpoint"}, "rewritten: %r" % data)
            check(b'name="getQuoteRequest"' in data, "the rest of the WSDL unchanged")
            status, _, data = soap11(cmi, "/services/StockQuoteProxy", get_quote("IBM"))
            check(status == 200 and is_quote(data, "IBM"), "SOAP 1.1 getQuote: %d %r" % (status, data))
            status, headers, data = cmi.request(
                "POST", "/services/StockQuoteProxy.StockQuoteProxyHttpSoap12Endpoint", envelope(get_quote("IBM"), 12),
                {"Content-Type": 'application/soap+xml; charset=UTF-8; action="urn:getQuote"'})
            check(status == 200 and is_quote(data, "IBM", 12) and
                  headers.get("content-type", "").startswith("application/soap+xml"),
                  "SOAP 1.2 getQuote: %d %r %r" % (status, headers, data))
            check(b.server.seen[-1][2].startswith("application/soap+xml"), "sent as SOAP 1.2: %r" % (b.server.seen[-1],))
        finally:
            cmi.stop_clean()


def test_content_type_check_answers_a_soap_fault():
    # reference/mediators/fault-mediator.md: application/xhtml+xml gets the
    # docs' SOAP 1.1 fault (To removed, then <send/>: back to the client);
    # other types go to the service and its answer comes back through the
    # outSequence.  The WSDL is published from the service's ?wsdl.
    with StockQuoteService() as b, Example("fault_check_content_type", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            check(b.server.seen and b.server.seen[0][1].endswith("?wsdl"), "the WSDL was read at load")
            seen = len(b.server.seen)
            status, _, data = soap11(cmi, "/services/CheckContentType", get_quote("IBM"),
                                     ctype="application/xhtml+xml")
            env = ET.fromstring(data)
            fault = env.find("{%s}Body/{%s}Fault" % (SOAP11_ENV, SOAP11_ENV))
            check(status == 500 and fault is not None and fault.findtext("faultcode").endswith(":Client") and
                  fault.findtext("faultstring") == "Content-Type Error" and fault.findtext("detail") ==
                  "Content-Type: application/xhtml+xml is not a valid content type.", "the fault: %d %r" % (status, data))
            check(len(b.server.seen) == seen, "the fault was not sent to the service")
            status, _, data = soap11(cmi, "/services/CheckContentType", get_quote("IBM"))
            check(status == 200 and is_quote(data, "IBM"), "forwarded: %d %r" % (status, data))
            cmi.wait_log(r"Decision = Continue the mediation flow")
        finally:
            cmi.stop_clean()


def test_respond_after_a_call_or_at_once():
    # reference/mediators/respond-mediator.md: WSO2 and CRF call the
    # service and answer its quote; other symbols answer the request itself.
    with StockQuoteService() as b, Example("respond_mediator", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = soap11(cmi, "/services/SimpleProxy", get_quote("WSO2"))
            check(status == 200 and is_quote(data, "WSO2"), "WSO2: the quote: %d %r" % (status, data))
            seen = len(b.server.seen)
            status, _, data = soap11(cmi, "/services/SimpleProxy", get_quote("IBM"))
            check(status == 200 and b"<m0:symbol>IBM</m0:symbol>" in data and b"getQuoteResponse" not in data,
                  "IBM: the request back: %d %r" % (status, data))
            check(len(b.server.seen) == seen, "IBM did not call the service")
        finally:
            cmi.stop_clean()


def test_loopback_skips_the_rest_of_the_in_sequence():
    # reference/mediators/loopback-mediator.md
    with Example("loopback_mediator") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = soap11(cmi, "/services/SimpleProxy", get_quote("IBM"))
            check(status == 200, "status %d %r" % (status, data))
            check(b"<m:symbolBeforeLoopBack>IBM</m:symbolBeforeLoopBack>" in data and b"AfterLoopBack" not in data,
                  "the payload before the loopback: %r" % data)
        finally:
            cmi.stop_clean()


def test_service_orchestration_with_two_calls():
    # reference/mediators/call-mediator.md (service orchestration): both
    # calls succeed, so the first response, kept by enrich, is answered.
    with StockQuoteService() as b, Example("call_service_orchestration", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            seen = len(b.server.seen)
            status, _, data = soap11(cmi, "/services/SampleProxyService", get_quote("IBM"))
            check(status == 200 and is_quote(data, "IBM"), "the first response: %d %r" % (status, data))
            check(len(b.server.seen) == seen + 2, "two calls: %r" % b.server.seen[seen:])
            cmi.wait_log(r"switchlog = Case: second call successful$")
        finally:
            cmi.stop_clean()


def test_address_endpoint_filter_on_to():
    # learn/examples/endpoint-examples/using-address-endpoints.md: the REST
    # request to .../SimpleStockQuoteProxy/StockQuote passes the filter on
    # ${properties.To} (a To holding "StockQuote"; the docs write the
    # property without the scope MI's grammar wants) and goes to the stock
    # quote service as SOAP 1.1; the quote comes back.  Another path does not
    # match: the else branch is empty and nothing answers (202).
    with StockQuoteService() as b, Example("address_endpoint", b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            body = get_quote("IBM").encode()
            headers = {"Content-Type": 'application/xml; charset=UTF-8;action="urn:getQuote"',
                       "SOAPAction": "urn:getQuote"}
            status, _, data = cmi.request("POST", "/services/SimpleStockQuoteProxy/StockQuote", body, headers)
            check(status == 200 and is_quote(data, "IBM"), "the quote: %d %r" % (status, data))
            seen = b.server.seen[-1]
            check(seen[2].startswith("text/xml") and "<m0:symbol>IBM</m0:symbol>" in seen[3],
                  "SOAP 1.1 to the service: %r" % (seen,))
        finally:
            cmi.stop_clean()


def test_payloadfactory_xml_with_a_variable():
    # reference/mediators/payloadfactory-mediator.md (XML, with a variable):
    # symbol comes from //m0:Code and the payload becomes the docs' getQuote
    # (${var.symbol}: MI's grammar of late 2024, which the page writes).
    with Example("payloadfactory_xml_proxy") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = cmi.request("POST", "/services/RespondMediatorProxy",
                                          b'<m0:Code xmlns:m0="http://services.samples">WSO2</m0:Code>',
                                          {"Content-Type": "application/xml"})
            check(status == 200 and compact(data.decode()) == '<m:getQuote xmlns:m="http://services.samples">'
                  '<m:request><m:symbol>WSO2</m:symbol></m:request></m:getQuote>', "%d %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_loadbalance_with_a_client_session():
    # learn/examples/endpoint-examples/using-loadbalancing-endpoints.md: the
    # docs' requests (an HTTP header simpleClientSession, no <syn:ClientID>)
    # go round robin across the three listeners; a request carrying a
    # <syn:ClientID> SOAP header always goes to the same one.
    order = ('<m0:placeOrder xmlns:m0="http://services.samples"><m0:order><m0:price>172.2</m0:price>'
             '<m0:quantity>19211</m0:quantity><m0:symbol>IBM</m0:symbol></m0:order></m0:placeOrder>')
    with StockQuoteService() as b1, StockQuoteService() as b2, StockQuoteService() as b3:
        hosts = {"localhost:9001": b1.port, "localhost:9002": b2.port, "localhost:9003": b3.port}
        with Example("loadbalance_session", hosts=hosts) as d:
            cmi = Cmi(d, workers=1).start()
            try:
                headers = {"Content-Type": "text/xml", "SOAPAction": "urn:placeOrder", "simpleClientSession": "123"}
                for _ in range(3):
                    status, _, data = cmi.request("POST", "/services/LoadBalanceProxy", envelope(order), headers)
                    check(status in (200, 202), "placed: %d %r" % (status, data))
                counts = [len(b.server.seen) for b in (b1, b2, b3)]
                check(counts == [1, 1, 1], "round robin across the three: %r" % counts)
                session = '<syn:ClientID xmlns:syn="http://ws.apache.org/ns/synapse">client-7</syn:ClientID>'
                body = envelope(order).replace(b"<soapenv:Header/>", ("<soapenv:Header>%s</soapenv:Header>" % session).encode())
                for _ in range(4):
                    cmi.request("POST", "/services/LoadBalanceProxy", body, headers)
                grown = [len(b.server.seen) - c for b, c in zip((b1, b2, b3), counts)]
                check(sorted(grown) == [0, 0, 4], "one client, one endpoint: %r" % grown)
            finally:
                cmi.stop_clean()


def test_xslt_cdata_in_the_output():
    # reference/mediators/xslt-mediator.md (Example 4): the stylesheet of
    # local entry XSLTTest wraps the body's element as CDATA inside <root>
    # (in the Synapse namespace, which the local entry's stylesheet is in);
    # the full log shows it and the caller gets the envelope.
    with Example("xslt_cdata_proxy") as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = soap11(cmi, "/services/XSLTProxy", "<abc>testabc</abc>", action="urn:mediate")
            check(status == 200, "status %d %r" % (status, data))
            want = '<root xmlns="http://ws.apache.org/ns/synapse"><![CDATA[<abc xmlns="">testabc</abc>]]></root>'
            check(want in compact(data.decode()), "the CDATA element: %r" % data)
            cmi.wait_log(re.escape(want))
        finally:
            cmi.stop_clean()
