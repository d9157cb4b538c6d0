"""The samples under samples/, run as their READMEs say but against the
test's broker (their deployments name 127.0.0.1:5672 and :15672, which the
test rewrites to the node's ports)."""
import json
import os
import re
import shutil

from harness import Cmi, check
from rabbitmq import wait_for
from test_engine import Deployment
from test_publish import RMQ_CONNECTORS

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def sample_deployment(d, name, node):
    shutil.rmtree(d)
    shutil.copytree(os.path.join(TOP, "samples", name, "deployment"), d)
    for folder, _, files in os.walk(d):
        for f in files:
            path = os.path.join(folder, f)
            with open(path) as fh:
                text = fh.read()
            text = text.replace("127.0.0.1:5672", "127.0.0.1:%d" % node.amqp_port)
            text = re.sub(r'(<parameter name="rabbitmq.server.port">)5672<', r"\g<1>%d<" % node.amqp_port, text)
            text = text.replace("</parameters>", '<parameter name="rabbitmq.management.url">http://127.0.0.1:%d'
                                "</parameter></parameters>" % node.mgmt_port)
            text = text.replace("</rabbitmq.init>", "<managementUrl>http://127.0.0.1:%d</managementUrl>"
                                "</rabbitmq.init>" % node.mgmt_port)
            with open(path, "w") as fh:
                fh.write(text)


def test_rabbitmq_consumer_sample(node):
    # samples/rabbitmq-consumer: orders posted to /intake are consumed;
    # the good ones accepted, the others dead-lettered into the queue the
    # endpoint declared for them (what samples/rabbitmq-consumer/try checks).
    with Deployment({}) as d:
        sample_deployment(d, "rabbitmq-consumer", node)
        cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            # On 4.x the orders go in at once: the first publishes wait for
            # the queue OrderConsumer declares a moment later (issue 19).
            # RabbitMQ 3.10 would accept and drop them until then.
            if not node.broker.is4:
                cmi.wait_log(r"\[rabbitmq:OrderConsumer\] connection 0: consuming from queue 'sample.orders'", 20)
            orders = [{"orderId": "A-1", "customer": "ann", "amount": 20}, {"orderId": "A-2", "customer": "bob",
                                                                           "amount": 0},
                      {"orderId": "A-3", "amount": 5}, {"orderId": "A-4", "customer": "cy", "amount": 12.5}]
            for o in orders:
                status, _, body = cmi.request("POST", "/intake", json.dumps(o), {"Content-Type": "application/json"})
                check(status == 202 and json.loads(body).get("queued") is True, "intake: %s %r" % (status, body))
            wait_for(lambda: len(re.findall(r"order A-\d (accepted|rejected)", cmi.log_text())) == 4, 10,
                     "4 decisions")
            decided = dict(re.findall(r"order (A-\d) (accepted|rejected)", cmi.log_text()))
            check(decided == {"A-1": "accepted", "A-2": "rejected", "A-3": "rejected", "A-4": "accepted"},
                  "decisions %r" % decided)
            wait_for(lambda: node.depth("sample.orders.rejected") == 2, 10,
                     "2 dead-lettered (has %r)" % node.depth("sample.orders.rejected"))
            rejected = sorted(json.loads(b)["orderId"] for b in node.drain("sample.orders.rejected"))
            check(rejected == ["A-2", "A-3"], "dead-lettered %r" % rejected)
            check(node.depth("sample.orders") == 0, "sample.orders holds %r" % node.depth("sample.orders"))
        finally:
            cmi.stop_clean()


def test_rabbitmq_rpc_sample(node):
    # samples/rabbitmq-rpc (MI's request-reply example): one POST to
    # /orderrequest goes through order-request and comes back over
    # order-reply as the HTTP answer (what samples/rabbitmq-rpc/try checks).
    with Deployment({}) as d:
        sample_deployment(d, "rabbitmq-rpc", node)
        cmi = Cmi(d, workers=2, env={"CMI_CONNECTORS_PATH": RMQ_CONNECTORS}).start()
        try:
            cmi.wait_log(r"\[rabbitmq:OrderRequestListener\] connection 0: consuming from queue 'order-request'", 20)
            cmi.wait_log(r"\[rabbitmq:RabbitMQConnection\] connection \d: consuming from queue 'order-reply'", 20)
            order = {"orderId": "1001", "item": "book", "quantity": 2}
            status, _, body = cmi.request("POST", "/orderrequest", json.dumps(order),
                                          {"Content-Type": "application/json"})
            check(status == 200, "orderrequest: %s %r" % (status, body))
            check(json.loads(body) == dict(order, status="CONFIRMED"), "reply %r" % body)
            check(node.depth("order-request") == 0, "order-request holds %r" % node.depth("order-request"))
        finally:
            cmi.stop_clean()
