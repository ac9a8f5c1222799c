# SPDX-License-Identifier: Apache-2.0
# Tiny HTTP/1.1 server used only by record.sh to give curl something to talk to.
# Answers GET, HEAD and POST on any path with a short text body; keeps connections alive.
"""usage: httpd.py ADDR PORT"""
import http.server
import ipaddress
import socket
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "loupe-rec"
    sys_version = ""

    def _reply(self, body: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        payload = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(True)

    def do_POST(self) -> None:  # noqa: N802
        self._reply(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._reply(False)

    def log_message(self, fmt: str, *args) -> None:
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main() -> None:
    addr, port = sys.argv[1], int(sys.argv[2])

    class Server(http.server.HTTPServer):
        address_family = socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET

        def server_bind(self) -> None:
            # skip HTTPServer.server_bind: its getfqdn() would do a reverse DNS lookup
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = addr, port

    Server((addr, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
