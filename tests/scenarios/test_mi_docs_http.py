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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import Cmi, check

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mi-docs")

QUOTE = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
         '<ns:getQuoteResponse xmlns:ns="http://services.samples"><ns:return xmlns:ax21="http://services.samples/xsd">'
         '<ax21:last>153.8</ax21:last><ax21:name>%s Company</ax21:name><ax21:symbol>%s</ax21:symbol></ns:return>'
         '</ns:getQuoteResponse></soapenv:Body></soapenv:Envelope>')


class StockQuoteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        # Axis2 answers a GET of a service too (its REST dispatch): the
        # docs' GET resource calls the address endpoint with the request's
        # method, as MI's pass-through does, so no body reaches it.
        self.do_POST()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.server.seen.append((self.command, self.path, self.headers.get("Content-Type"), body))
        symbol = re.search(r"<(?:\w+:)?symbol>([^<]*)</", body)
        if "placeOrder" in body:
            self.send_response(202)  # Axis2's in-only operation
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = (QUOTE % ((symbol.group(1),) * 2 if symbol else ("?", "?"))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StockQuoteService:
    def __enter__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), StockQuoteHandler)
        self.server.daemon_threads = True
        self.server.seen = []
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Example:
    """A corpus example copied to a temporary folder, with the docs'
    localhost:9000 pointed at the test's backend (the only change)."""

    def __init__(self, name, port=None):
        self.src = os.path.join(CORPUS, name)
        self.port = port

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
                with open(os.path.join(self.dir, rel), "w", encoding="utf-8") as out:
                    out.write(text)
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


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
            status, _, data = cmi.request("GET", "/stockquote/view/IBM?param1=value1&param2=value2")
            check(status == 200 and b"<ns:getQuoteResponse" in data, "a quote: %d %r" % (status, data))
            check(b.server.seen[-1][:2] == ("GET", "/services/SimpleStockQuoteService"), "sent %r" % b.server.seen[-1:])
            order = (b'<placeOrder xmlns="http://services.samples"><order><price>50</price><quantity>10</quantity>'
                     b'<symbol>IBM</symbol></order></placeOrder>')
            status, _, data = cmi.request("POST", "/stockquote/order/", order, {"Content-type": "application/xml"})
            check(status == 202, "placeOrder: %d %r" % (status, data))
            # OUT_ONLY: the 202 comes first, the order goes on after it.
            deadline = time.monotonic() + 5
            while len(b.server.seen) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            check(len(b.server.seen) == 2 and b.server.seen[1][0] == "POST" and "<symbol>IBM</symbol>"
                  in b.server.seen[1][3], "the order reached the service: %r" % b.server.seen[1:])
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
