#!/usr/bin/env python3
"""A DNS responder for the static-binary test: answers every A question with
127.0.0.1 and every other question with no data, on 127.0.0.1:53 (UDP),
until killed. Prints each question name on stdout."""

import socket
import struct
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    query, peer = sock.recvfrom(512)
    qid, _flags, qdcount = struct.unpack("!HHH", query[:6])
    end = 12
    labels = []
    while query[end]:
        labels.append(query[end + 1:end + 1 + query[end]].decode())
        end += 1 + query[end]
    qtype = struct.unpack("!H", query[end + 1:end + 3])[0]
    question = query[12:end + 5]
    print(".".join(labels), qtype, flush=True)
    answers = b""
    if qtype == 1:
        answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    header = struct.pack("!HHHHHH", qid, 0x8180, 1, 1 if answers else 0, 0, 0)
    sock.sendto(header + question + answers, peer)
