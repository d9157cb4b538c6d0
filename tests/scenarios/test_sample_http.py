"""samples/http-backend-call, as its README runs it, with its backend.py on
a free port (the deployment is copied and its port rewritten)."""
import json
import os
import shutil
import subprocess
import sys

from harness import Cmi, check
from test_engine import Deployment

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SAMPLE = os.path.join(TOP, "samples", "http-backend-call")


def test_http_backend_call_sample():
    backend = subprocess.Popen([sys.executable, os.path.join(SAMPLE, "backend.py"), "0"], stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        line = backend.stdout.readline()
        check(line.startswith("listening on "), "backend: %r" % line)
        port = int(line.split()[-1])
        with Deployment({}) as d:
            shutil.rmtree(d)
            shutil.copytree(os.path.join(SAMPLE, "deployment"), d)
            ep = os.path.join(d, "endpoints", "CustomerServiceEP.xml")
            with open(ep) as f:
                text = f.read().replace("127.0.0.1:9090", "127.0.0.1:%d" % port)
            with open(ep, "w") as f:
                f.write(text)
            cmi = Cmi(d, workers=2).start()
            try:
                status, headers, data = cmi.request("GET", "/customer/42")
                check(status == 200 and json.loads(data) == {"customerId": "42", "name": "Ada Lovelace",
                                                             "city": "London", "tier": "GOLD", "orderCount": 3},
                      "known: %d %r" % (status, data))
                check(headers.get("x-served-by") == "customer-service", "backend header: %r" % headers)
                status, _, data = cmi.request("GET", "/customer/999")
                check(status == 404 and json.loads(data) == {"error": "customer 999 not found"},
                      "unknown: %d %r" % (status, data))
                backend.terminate()
                backend.wait(10)
                status, _, data = cmi.request("GET", "/customer/42")
                check(status == 503 and json.loads(data)["code"] == "101503", "service down: %d %r" % (status, data))
                cmi.wait_log(r"endpoint CustomerServiceEP suspended for 2000 ms after error 101503", 5)
            finally:
                cmi.stop_clean()
    finally:
        backend.kill()
        backend.wait()
