"""MI's classic response path against a real HTTP backend the test starts
(issue 22): <send> and the outSequence (inline, by key, empty, absent),
<send receive>, <in>/<out> in the main sequence, <loopback>, <makefault>
in its three versions, the To address, and the open-proxy guard: a To the
client sent never reaches the network."""
import json
import time

from harness import Cmi, check
from test_call import NS, Backend, closed_port
from test_engine import Deployment

FAULT = ('<faultSequence><log category="WARN"><message>fault ${props.synapse.ERROR_CODE}</message></log>'
         '<payloadFactory media-type="json"><format>{"code": "${props.synapse.ERROR_CODE}", "detail": '
         '"${props.synapse.ERROR_DETAIL}"}</format></payloadFactory><property name="HTTP_SC" scope="axis2" '
         'value="502"/><respond/></faultSequence>')


def resource(template, inseq, out=None, attrs=""):
    out_xml = "" if out is None else "<outSequence>%s</outSequence>" % out
    return ('<resource methods="POST" uri-template="%s"%s><inSequence>%s</inSequence>%s%s</resource>'
            % (template, attrs, inseq, out_xml, FAULT))


def deployment(port):
    echo = '<endpoint><http method="post" uri-template="http://127.0.0.1:%d/echo"/></endpoint>' % port
    resources = [
        resource("/classic", '<log><message>in ${payload.n}</message></log><send>%s</send>'
                 '<log><message>after send</message></log>' % echo,
                 '<log><message>out ${payload.got.n} status ${props.axis2.HTTP_SC}</message></log><send/>'),
        resource("/no-out", '<send>%s</send>' % echo),
        resource("/by-key", '<send>%s</send>' % echo, attrs=' outSequence="outSeq"'),
        resource("/empty-out", '<send>%s</send>' % echo, out=""),
        resource("/receive", '<send receive="receiver">%s</send>' % echo, out="<log><message>not me</message></log>"),
        resource("/respond-out", '<send>%s</send>' % echo,
                 '<payloadFactory media-type="json"><format>{"wrapped": ${payload.got}}</format></payloadFactory>'
                 '<respond/><log><message>after respond</message></log>'),  # respond ends the flow
        resource("/to", '<header name="To" value="http://127.0.0.1:%d/echo"/><send/>' % port, out="<send/>"),
        resource("/open-proxy", '<send/>', out="<send/>"),
        resource("/refused", '<send><endpoint><http method="post" uri-template="http://127.0.0.1:%d/x"/>'
                 '</endpoint></send>' % closed_port(), out="<send/>"),
        resource("/loopback", '<payloadFactory media-type="json"><format>{"looped": true}</format></payloadFactory>'
                 '<loopback/><log><message>skipped</message></log>',
                 '<log><message>out after loopback</message></log><send/>'),
        resource("/fault11", '<makefault version="soap11" response="true">'
                 '<code xmlns:soap11Env="http://schemas.xmlsoap.org/soap/envelope/" value="soap11Env:Client"/>'
                 '<reason value="Content-Type Error"/><role/>'
                 '<detail>Content-Type: application/xhtml+xml is not a valid content type.</detail>'
                 '</makefault><send/>'),
        resource("/fault12", '<makefault version="soap12" response="true">'
                 '<code xmlns:soap12Env="http://www.w3.org/2003/05/soap-envelope" value="soap12Env:Sender"/>'
                 '<reason expression="${payload.why}"/><node>urn:node</node><role>urn:role</role>'
                 '<detail><e:info xmlns:e="urn:e">bad</e:info></detail></makefault><respond/>'),
        resource("/response-prop", '<property name="RESPONSE" value="true"/><payloadFactory media-type="json">'
                 '<format>{"r": 1}</format></payloadFactory><send/>'),
        resource("/out-only", '<property name="FORCE_SC_ACCEPTED" value="true" scope="axis2"/>'
                 '<property name="OUT_ONLY" value="true"/><send>%s</send>' % echo,
                 '<log><message>out path of an OUT_ONLY send</message></log><send/>'),
        resource("/http10", '<property name="FORCE_HTTP_1.0" value="true" scope="axis2"/><send>%s</send>' % echo),
        resource("/failover", '<send><endpoint><failover><endpoint name="dead"><http method="post" '
                 'uri-template="http://127.0.0.1:%d/x"/></endpoint><endpoint name="alive"><http method="post" '
                 'uri-template="http://127.0.0.1:%d/echo"/></endpoint></failover></endpoint></send>'
                 % (closed_port(), port), out="<send/>"),
        resource("/format", '<send><endpoint><address uri="http://127.0.0.1:%d/echo" format="json"/></endpoint>'
                 '</send>' % port),
        resource("/forever", '<send>%s</send>' % echo, '<send>%s</send>' % echo),
        resource("/faultpox", '<makefault version="pox"><reason value="Popular service unavailable"/>'
                 '</makefault><respond/>'),
    ]
    return Deployment({
        "api/classic.xml": '<api %s name="Classic" context="/cl">%s</api>' % (NS, "".join(resources)),
        "sequences/outSeq.xml": '<sequence %s name="outSeq"><log><message>outSeq ran</message></log>'
                                '<send/></sequence>' % NS,
        "sequences/receiver.xml": '<sequence %s name="receiver"><log><message>receiver ran</message></log>'
                                  '<respond/></sequence>' % NS,
        # MI's shipped main, in shape: <in> sends, <out> sends back.
        "sequences/main.xml": '<sequence %s name="main"><in><log><message>main in</message></log>'
                              '<send><endpoint><http method="post" uri-template="http://127.0.0.1:%d/echo"/>'
                              '</endpoint></send></in><out><log><message>main out</message></log><send/></out>'
                              '</sequence>' % (NS, port),
    })


def post(cmi, path, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return cmi.request("POST", path, json.dumps(body).encode() if not isinstance(body, bytes) else body, h)


def test_send_runs_the_out_sequence_on_the_response():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/classic", {"n": 7})
            check(status == 201 and json.loads(data) == {"got": {"n": 7}, "type": "application/json"},
                  "the backend's answer: %d %r" % (status, data))
            cmi.wait_log(r"out 7 status 201", 5)
            # Mediators after <send> run on the request, before the response.
            log = cmi.log_text()
            check(log.index("in 7") < log.index("after send") < log.index("out 7"), "order:\n%s" % log)
            check(len(b.server.seen) == 1, "one request: %r" % b.server.seen)
        finally:
            cmi.stop_clean()


def test_out_sequence_absent_by_key_empty_and_receive():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/no-out", {"n": 1})
            check(status == 201 and json.loads(data)["got"] == {"n": 1}, "no outSequence: sent back: %d %r"
                  % (status, data))
            status, _, data = post(cmi, "/cl/by-key", {"n": 2})
            check(status == 201 and json.loads(data)["got"] == {"n": 2}, "outSequence by key: %d %r" % (status, data))
            cmi.wait_log(r"outSeq ran", 5)
            # An empty outSequence answers nothing (MI leaves the caller
            # waiting): cmi's end of flow, 202 and a warning.
            status, _, data = post(cmi, "/cl/empty-out", {"n": 3})
            check(status == 202 and data == b"", "empty outSequence: %d %r" % (status, data))
            cmi.wait_log(r"end without <respond>, <send> or <drop>", 5)
            status, _, data = post(cmi, "/cl/receive", {"n": 4})
            check(status == 201 and json.loads(data)["got"] == {"n": 4}, "receive: %d %r" % (status, data))
            cmi.wait_log(r"receiver ran", 5)
            check("not me" not in cmi.log_text(), "the outSequence ran beside receive")
            status, _, data = post(cmi, "/cl/respond-out", {"n": 5})
            check(status == 201 and json.loads(data) == {"wrapped": {"n": 5}}, "respond in the out path: %r" % data)
            check("after respond" not in cmi.log_text(), "mediators after <respond> ran")
        finally:
            cmi.stop_clean()


def test_main_sequence_with_in_and_out():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/anything/else", {"n": 9})
            check(status == 201 and json.loads(data)["got"] == {"n": 9}, "main: %d %r" % (status, data))
            cmi.wait_log(r"main out", 5)
            check(cmi.log_text().count("main in") == 1 and cmi.log_text().count("main out") == 1,
                  "<in> on the request only, <out> on the response only")
        finally:
            cmi.stop_clean()


def test_send_to_the_flows_to_address_and_never_the_clients():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/to", {"n": 6})
            check(status == 201 and json.loads(data)["got"] == {"n": 6}, "To set by the flow: %d %r" % (status, data))
            seen = len(b.server.seen)
            # The client names a To every way it can: an HTTP header, a
            # WS-Addressing header in a SOAP envelope.
            soap = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                    'xmlns:wsa="http://www.w3.org/2005/08/addressing"><soapenv:Header>'
                    '<wsa:To>http://127.0.0.1:%d/echo</wsa:To></soapenv:Header><soapenv:Body><x/></soapenv:Body>'
                    '</soapenv:Envelope>' % b.port).encode()
            status, _, data = post(cmi, "/cl/open-proxy", soap, {"Content-Type": "text/xml",
                                                                "To": "http://127.0.0.1:%d/echo" % b.port})
            answer = json.loads(data)
            check(status == 502 and answer["code"] == "101500" and "needs a To address set by the flow"
                  in answer["detail"], "open proxy refused: %d %r" % (status, data))
            check(len(b.server.seen) == seen, "nothing reached the backend: %r" % b.server.seen[seen:])
        finally:
            cmi.stop_clean()


def test_send_failure_runs_the_fault_sequence():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/refused", {"n": 1})
            check(status == 502 and json.loads(data)["code"] == "101503", "refused: %d %r" % (status, data))
            cmi.wait_log(r"fault 101503", 5)
        finally:
            cmi.stop_clean()


def test_loopback_turns_to_the_out_path():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/loopback", {"n": 1})
            check(status == 200 and json.loads(data) == {"looped": True}, "loopback: %d %r" % (status, data))
            cmi.wait_log(r"out after loopback", 5)
            check("skipped" not in cmi.log_text(), "the rest of the in path ran")
            check(b.server.seen == [], "loopback sent something")
        finally:
            cmi.stop_clean()


def test_makefault_soap11_soap12_and_pox():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            # The fault mediator page's example 2 (its makefault, <send/>).
            status, headers, data = post(cmi, "/cl/fault11", {"n": 1})
            check(status == 500 and headers.get("content-type", "").startswith("text/xml"), "soap11: %d %r"
                  % (status, headers))
            check(data.decode() == '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
                  '<soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode>'
                  '<faultstring>Content-Type Error</faultstring><detail>Content-Type: application/xhtml+xml is not '
                  'a valid content type.</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>',
                  "soap11 fault: %r" % data)
            status, headers, data = post(cmi, "/cl/fault12", {"why": "no <such> thing"})
            check(status == 500 and headers.get("content-type", "").startswith("application/soap+xml"),
                  "soap12: %d %r" % (status, headers))
            check(data.decode() == '<soapenv:Envelope xmlns:soapenv="http://www.w3.org/2003/05/soap-envelope">'
                  '<soapenv:Body><soapenv:Fault><soapenv:Code><soapenv:Value>soapenv:Sender</soapenv:Value>'
                  '</soapenv:Code><soapenv:Reason><soapenv:Text xml:lang="en">no &lt;such&gt; thing</soapenv:Text>'
                  '</soapenv:Reason><soapenv:Node>urn:node</soapenv:Node><soapenv:Role>urn:role</soapenv:Role>'
                  '<soapenv:Detail><e:info xmlns:e="urn:e">bad</e:info></soapenv:Detail></soapenv:Fault>'
                  '</soapenv:Body></soapenv:Envelope>', "soap12 fault: %r" % data)
            status, headers, data = post(cmi, "/cl/faultpox", {"n": 1})
            check(status == 500 and data == b"<Exception>Popular service unavailable</Exception>",
                  "pox: %d %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_response_out_only_and_http10_properties():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/response-prop", {"n": 1})
            check(status == 200 and json.loads(data) == {"r": 1}, "RESPONSE then <send/>: %d %r" % (status, data))
            check(b.server.seen == [], "RESPONSE: nothing sent to a backend")
            status, _, data = post(cmi, "/cl/out-only", {"n": 2})
            check(status == 202 and data == b"", "OUT_ONLY with FORCE_SC_ACCEPTED: %d %r" % (status, data))
            deadline = time.monotonic() + 5
            while not b.server.seen and time.monotonic() < deadline:
                time.sleep(0.02)
            check(len(b.server.seen) == 1 and b.server.seen[0][1] == "/echo", "the OUT_ONLY request went: %r"
                  % b.server.seen)
            cmi.wait_log(r"POST http://127\.0\.0\.1:\d+/echo -> 201", 5)
            check("out path of an OUT_ONLY send" not in cmi.log_text(), "the out path ran for OUT_ONLY")
            status, _, data = post(cmi, "/cl/http10", {"n": 3})
            check(status == 201 and b.server.seen[-1][2].get(":version") == "HTTP/1.0",
                  "FORCE_HTTP_1.0: %d, backend saw %r" % (status, b.server.seen[-1][2].get(":version")))
        finally:
            cmi.stop_clean()


def test_send_fails_over_as_call_does():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/failover", {"n": 8})
            check(status == 201 and json.loads(data)["got"] == {"n": 8}, "failover: %d %r" % (status, data))
            cmi.wait_log(r"endpoint dead failed \(101503\): trying the next", 5)
        finally:
            cmi.stop_clean()


def test_address_format_writes_the_request_as_that_type():
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/format", b"<order><id>7</id></order>", {"Content-Type": "application/xml"})
            check(status == 201 and json.loads(data) == {"got": {"order": {"id": 7}}, "type": "application/json"},
                  "format=json: %d %r" % (status, data))
        finally:
            cmi.stop_clean()


def test_an_out_path_that_sends_for_ever_is_cut_off():
    # The outSequence sends again on every response: 64 sends, then the
    # fault path (MI would loop for ever).
    with Backend() as b, deployment(b.port) as d:
        cmi = Cmi(d, workers=1).start()
        try:
            status, _, data = post(cmi, "/cl/forever", {"n": 1})
            check(status == 502 and "more than 64 <send>s" in json.loads(data)["detail"], "%d %r" % (status, data))
            check(len(b.server.seen) == 64, "requests made: %d" % len(b.server.seen))
        finally:
            cmi.stop_clean()
