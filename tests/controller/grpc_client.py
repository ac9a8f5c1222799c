#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# A third-party client of loupe-controller written with Debian's python3-grpcio and stubs from
# protoc --python_out: proves the API is plain gRPC. Each subcommand prints one line the test
# checks: the status code name, and what came back.
#
#   grpc_client.py STUBS TARGET [--ca F] [--cert F --key F] [--token T] CMD [ARGS]
#   CMD: apply FILE | list | get-events N | follow-slow SECONDS | connect NODE | raw METHOD HEX
#        | big-apply MIB | truncated-apply
import argparse
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("stubs")
ap.add_argument("target")
ap.add_argument("--ca")
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--token")
ap.add_argument("--server-name")
ap.add_argument("cmd")
ap.add_argument("args", nargs="*")
a = ap.parse_args()
sys.path.insert(0, a.stubs)

import grpc  # noqa: E402
from loupe.v1 import agent_pb2, observer_pb2, policy_pb2  # noqa: E402


def channel():
    opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    if a.server_name:
        opts.append(("grpc.ssl_target_name_override", a.server_name))
    if a.ca:
        creds = grpc.ssl_channel_credentials(
            open(a.ca, "rb").read(),
            open(a.key, "rb").read() if a.key else None,
            open(a.cert, "rb").read() if a.cert else None,
        )
        return grpc.secure_channel(a.target, creds, opts)
    return grpc.insecure_channel(a.target, opts)


ch = channel()
md = [("authorization", "Bearer " + a.token)] if a.token else []


def unary(method, req, resp_type):
    f = ch.unary_unary(method, request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
                       response_deserializer=resp_type.FromString if resp_type else None)
    return f(req, metadata=md, timeout=10)


try:
    if a.cmd == "apply":
        r = unary("/loupe.v1.PolicyService/Apply",
                  policy_pb2.ApplyRequest(json=open(a.args[0]).read(), source=a.args[0]),
                  policy_pb2.ApplyResponse)
        print("OK revision=%d created=%s configured=%s" % (r.revision, ",".join(r.created), ",".join(r.configured)))
    elif a.cmd == "list":
        r = unary("/loupe.v1.PolicyService/List", policy_pb2.ListPoliciesRequest(), policy_pb2.ListPoliciesResponse)
        print("OK revision=%d policies=%s" % (r.revision, ",".join(p.name for p in r.policies)))
    elif a.cmd == "get-events":
        f = ch.unary_stream("/loupe.v1.ObserverService/GetEvents",
                            request_serializer=observer_pb2.GetEventsRequest.SerializeToString,
                            response_deserializer=observer_pb2.GetEventsResponse.FromString)
        n = 0
        nodes = set()
        for resp in f(observer_pb2.GetEventsRequest(number=int(a.args[0])), metadata=md, timeout=10):
            n += len(resp.events)
            nodes.update(e.node for e in resp.events)
        print("OK events=%d nodes=%s" % (n, ",".join(sorted(nodes))))
    elif a.cmd == "follow-slow":
        # subscribes, reads nothing for a while, then reads what is there: the in-band notice
        f = ch.unary_stream("/loupe.v1.ObserverService/GetEvents",
                            request_serializer=observer_pb2.GetEventsRequest.SerializeToString,
                            response_deserializer=observer_pb2.GetEventsResponse.FromString)
        it = f(observer_pb2.GetEventsRequest(follow=True), metadata=md, timeout=60)
        first = next(it)  # the stream is open once something came
        n, missed, notice = len(first.events), first.missed, first.notice
        open(a.args[1], "w").write("subscribed\n")
        time.sleep(float(a.args[0]))  # the deliberate stall this test is about
        import threading
        threading.Timer(5.0, it.cancel).start()  # then read for 5 s at most
        try:
            for resp in it:
                n += len(resp.events)
                missed += resp.missed
                notice = notice or resp.notice
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise
        print("OK events=%d missed=%d notice=%s" % (n, missed, notice.replace(" ", "_")))
    elif a.cmd == "connect":
        # an agent's hello: what an agent without a valid certificate gets
        f = ch.stream_stream("/loupe.v1.AgentService/Connect",
                             request_serializer=agent_pb2.AgentMessage.SerializeToString,
                             response_deserializer=agent_pb2.ControllerMessage.FromString)
        msgs = iter([agent_pb2.AgentMessage(hello=agent_pb2.Hello(node=a.args[0], version="py"))])
        for resp in f(msgs, metadata=md, timeout=5):
            print("OK got=%s" % resp.WhichOneof("msg"))
            break
        else:
            print("OK got=nothing")
    elif a.cmd == "raw":
        f = ch.unary_unary(a.args[0])
        f(bytes.fromhex(a.args[1]), metadata=md, timeout=10)
        print("OK")
    elif a.cmd == "raw-agent":
        f = ch.stream_stream("/loupe.v1.AgentService/Connect")
        for resp in f(iter([bytes.fromhex(a.args[0])]), metadata=md, timeout=5):
            pass
        print("OK")
    elif a.cmd == "big-apply":
        body = policy_pb2.ApplyRequest(json=" " * (int(a.args[0]) << 20), source="big").SerializeToString()
        f = ch.unary_unary("/loupe.v1.PolicyService/Apply")
        f(body, metadata=md, timeout=20)
        print("OK")
    elif a.cmd == "truncated-apply":
        body = policy_pb2.ApplyRequest(json='{"a": 1}', source="t").SerializeToString()
        f = ch.unary_unary("/loupe.v1.PolicyService/Apply")
        f(body[:-3], metadata=md, timeout=10)
        print("OK")
    else:
        print("usage")
        sys.exit(2)
except grpc.RpcError as e:
    print("%s %s" % (e.code().name, e.details()))
