#!/usr/bin/env python3
"""A small customer service for the sample: GET /customers/{id} answers a
customer record as JSON (404 for ids it does not know).  Usage:
backend.py [PORT] (default 9090); it prints "listening on PORT" once up."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CUSTOMERS = {
    "42": {"id": "42", "firstName": "Ada", "lastName": "Lovelace", "tier": "gold",
           "address": {"street": "12 St James's Square", "city": "London", "country": "GB"},
           "orders": [{"id": "A-1", "total": 120.5}, {"id": "A-2", "total": 80.0}, {"id": "A-7", "total": 15.25}]},
    "7": {"id": "7", "firstName": "Alan", "lastName": "Turing", "tier": "silver",
          "address": {"street": "Adlington Road", "city": "Wilmslow", "country": "GB"}, "orders": []},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        customer = CUSTOMERS.get(parts[1]) if len(parts) == 2 and parts[0] == "customers" else None
        status, body = (200, customer) if customer else (404, {"error": "no such customer", "path": self.path})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", "customer-service")
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9090
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()
