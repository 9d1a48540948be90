#!/usr/bin/env python3
"""A hostile registry: /v2/<name>/tags/list answers page after page of
distinct tags (1000 tags of 120 bytes, ~120 KiB a page), each with a Link
to the next, for ever. Prints its port, then serves. Usage: endless.py"""

import http.server
import json
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        page = 0
        if "page=" in self.path:
            page = int(self.path.rsplit("page=", 1)[1])
        pad = "x" * 100
        tags = [f"p{page}-{i}-{pad}" for i in range(1000)]
        body = json.dumps({"name": "team/app", "tags": tags}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header(
            "Link", f'</v2/team/app/tags/list?page={page + 1}>; rel="next"'
        )
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
