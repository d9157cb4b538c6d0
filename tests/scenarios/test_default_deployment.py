"""The repository's synapse-configs/default, served as the quickstart serves
it: the requests the README shows must answer as the README says."""
import json
import os

from harness import Cmi, check

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "synapse-configs", "default")


def post_json(cmi, path, body):
    return cmi.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})


def test_default_deployment_answers_as_documented():
    cmi = Cmi(DEFAULT, workers=2).start()
    try:
        status, headers, body = cmi.request("GET", "/hello")
        check(status == 200 and json.loads(body) == {"message": "Hello from cmi", "engine": "cmi"}, "/hello: %r" % body)
        status, headers, body = cmi.request("GET", "/hello/bob?lang=es")
        check(status == 200 and headers.get("x-greeting") == "personal", "/hello/bob: %s %r" % (status, headers))
        check(json.loads(body) == {"message": "Hola, bob"}, "/hello/bob?lang=es: %r" % body)
        status, _, body = cmi.request("GET", "/health")
        check(status == 200 and json.loads(body) == {"status": "UP"}, "/health: %r" % body)
        order = {"customer": {"email": "ann@example.com"}, "items": [{"sku": "A", "price": 20}, {"sku": "B", "price": 12.5}]}
        status, headers, body = post_json(cmi, "/orders", order)
        got = json.loads(body)
        check(status == 201 and headers.get("location") == "/orders/" + got["orderId"], "POST /orders: %s %r" % (status, headers))
        check(got["subtotal"] == 32.5 and got["shipping"] == 4.95 and got["total"] == 37.45 and got["items"] == 2,
              "POST /orders body: %r" % got)
        status, _, body = post_json(cmi, "/orders", {"customer": {}})
        check(status == 400 and "customer.email" in json.loads(body)["error"], "invalid order: %s %r" % (status, body))
        status, _, body = post_json(cmi, "/orders", {"customer": {"email": "a@b.c"}, "items": [{"price": "free"}]})
        check(status == 422 and json.loads(body)["code"] == 300002, "unpriceable order: %s %r" % (status, body))
        status, _, body = cmi.request("GET", "/orders/123")
        check(status == 200 and json.loads(body)["status"] == "SHIPPED", "GET /orders/123: %r" % body)
        status, _, _ = cmi.request("GET", "/orders/abc")
        check(status == 400, "GET /orders/abc: %s" % status)
        status, _, body = post_json(cmi, "/orders/9/cancel", {"state": "SHIPPED"})
        check(status == 409, "cancel a shipped order: %s %r" % (status, body))
        status, _, body = post_json(cmi, "/orders/9/cancel", {"state": "NEW"})
        check(status == 200 and json.loads(body)["status"] == "CANCELLED", "cancel: %s %r" % (status, body))
    finally:
        cmi.stop_clean()
