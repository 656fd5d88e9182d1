"""A Python client of the goverse gate's gRPC service, from stubs
generated from proto/gate.proto with grpcio-tools: it registers, calls an
object, receives a push, and reads an error's goverse code.

Usage: python3 gate_client.py <host:port> <object id>
Prints one line per step, for the Rust test that runs it to check.
"""

import os
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc


def stubs():
    here = os.path.dirname(os.path.abspath(__file__))
    proto_dir = os.path.normpath(os.path.join(here, "..", "..", "proto"))
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    out = tempfile.mkdtemp(prefix="goverse-python-")
    status = protoc.main([
        "protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(proto_dir, "gate.proto"),
    ])
    if status != 0:
        sys.exit(f"protoc failed with {status}")
    sys.path.insert(0, out)


def main():
    address, object_id = sys.argv[1], sys.argv[2]
    stubs()
    import gate_pb2
    import gate_pb2_grpc
    from google.protobuf import any_pb2, wrappers_pb2

    channel = grpc.insecure_channel(address)
    gate = gate_pb2_grpc.GateStub(channel)

    events = gate.Register(gate_pb2.RegisterRequest())
    registered = next(events).registered
    print("registered", registered.client_id, flush=True)

    def call(method, message):
        request = any_pb2.Any()
        request.Pack(message)
        # A call on behalf of a registered client carries its session
        # token: nobody else can use the client id.
        response = gate.CallObject(gate_pb2.CallObjectRequest(
            type="Purse", id=object_id, method=method, request=request,
            client_id=registered.client_id),
            metadata=(("x-session-token", registered.session),))
        value = wrappers_pb2.Int32Value()
        if not response.response.Unpack(value):
            sys.exit(f"unexpected response type {response.response.type_url}")
        return value.value

    print("add", call("Add", wrappers_pb2.Int32Value(value=5)), flush=True)
    print("add", call("Add", wrappers_pb2.Int32Value(value=5)), flush=True)

    show = any_pb2.Any()
    show.Pack(wrappers_pb2.StringValue(value=registered.client_id))
    gate.CallObject(gate_pb2.CallObjectRequest(
        type="Purse", id=object_id, method="Show", request=show))
    event = next(events)
    pushed = wrappers_pb2.Int32Value()
    event.message.message.Unpack(pushed)
    print("pushed", event.message.sequence, pushed.value, flush=True)

    try:
        call("Spend", wrappers_pb2.Int32Value(value=100))
        print("error none", flush=True)
    except grpc.RpcError as error:
        code = dict(error.trailing_metadata() or ()).get("goverse-code")
        print("error", error.code().name, code, flush=True)

    events.cancel()
    channel.close()


if __name__ == "__main__":
    main()
