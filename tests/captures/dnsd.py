# SPDX-License-Identifier: Apache-2.0
# Tiny authoritative DNS responder used only by record.sh to give dig something to talk to.
# Answers A with 198.18.10.2 and AAAA with fd00:198:18:10::2 for any name, over UDP and TCP.
"""usage: dnsd.py ADDR [ADDR ...]   (listens on port 53 of each address, UDP and TCP)"""
import ipaddress
import selectors
import socket
import struct
import sys

A = socket.inet_pton(socket.AF_INET, "198.18.10.2")
AAAA = socket.inet_pton(socket.AF_INET6, "fd00:198:18:10::2")


def answer(query: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    pos = 12
    while True:  # skip the question name (plain labels only, as clients send)
        if pos >= len(query):
            return None
        n = query[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0:
            return None
        pos += 1 + n
    if pos + 4 > len(query):
        return None
    qtype, qclass = struct.unpack("!HH", query[pos:pos + 4])
    question = query[12:pos + 4]
    rdata = {1: A, 28: AAAA}.get(qtype) if qclass == 1 else None
    ancount = 1 if rdata else 0
    # QR, opcode 0, AA, RD copied from the query, RA; rcode NOERROR
    rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080
    out = struct.pack("!HHHHHH", qid, rflags, 1, ancount, 0, 0) + question
    if rdata:
        out += struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata
    return out


def recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_tcp(conn: socket.socket) -> None:
    conn.settimeout(5)
    with conn:
        try:
            while True:
                hdr = recv_exact(conn, 2)
                if hdr is None:
                    return
                msg = recv_exact(conn, struct.unpack("!H", hdr)[0])
                if msg is None:
                    return
                resp = answer(msg)
                if resp is None:
                    return
                conn.sendall(struct.pack("!H", len(resp)) + resp)
        except OSError:
            return


def main() -> None:
    sel = selectors.DefaultSelector()
    for addr in sys.argv[1:]:
        fam = socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET
        u = socket.socket(fam, socket.SOCK_DGRAM)
        u.bind((addr, 53))
        sel.register(u, selectors.EVENT_READ, "udp")
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, 53))
        t.listen(8)
        sel.register(t, selectors.EVENT_READ, "tcp")
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data == "udp":
                msg, peer = s.recvfrom(4096)
                resp = answer(msg)
                if resp is not None:
                    s.sendto(resp, peer)
            else:
                conn, _ = s.accept()
                serve_tcp(conn)


if __name__ == "__main__":
    main()
