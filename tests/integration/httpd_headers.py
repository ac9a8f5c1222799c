# SPDX-License-Identifier: Apache-2.0
# A small HTTP/1.1 server for tests/integration/test_rewrite_live.c: answers every GET, HEAD and
# POST with 200 and a body naming the address and port it was reached on ("served-by ADDR
# PORT"), and logs each request's headers as they arrived, one JSON object per line:
# {"listen": "ADDR PORT", "method": "GET", "path": "/", "headers": {"name-lower-case": "value"}}.
# Prints "listening" once every listener is bound.
"""usage: httpd_headers.py LOG ADDR PORT [ADDR PORT ...]"""
import http.server
import ipaddress
import json
import socket
import socketserver
import sys
import threading

LOCK = threading.Lock()


def make_handler(log, listen):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rw-httpd"
        sys_version = ""

        def _reply(self, body):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            # raw header lines: values exactly as received (latin-1 keeps every byte)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with LOCK:
                log.write(json.dumps({"listen": listen, "method": self.command,
                                      "path": self.path, "headers": headers}) + "\n")
                log.flush()
            payload = ("served-by %s\n" % listen).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def do_GET(self):  # noqa: N802
            self._reply(True)

        def do_POST(self):  # noqa: N802
            self._reply(True)

        def do_HEAD(self):  # noqa: N802
            self._reply(False)

        def log_message(self, fmt, *args):
            pass

    return Handler


def main():
    if len(sys.argv) < 4 or len(sys.argv) % 2:
        sys.exit(__doc__)
    log = open(sys.argv[1], "a", encoding="utf-8")
    servers = []
    for i in range(2, len(sys.argv), 2):
        addr, port = sys.argv[i], int(sys.argv[i + 1])
        fam = socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            address_family = fam
            daemon_threads = True
            allow_reuse_address = True

            def server_bind(self):
                # HTTPServer.server_bind would look the name up (reverse DNS)
                socketserver.TCPServer.server_bind(self)

        servers.append(Server((addr, port), make_handler(log, "%s %d" % (addr, port))))
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("listening", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
