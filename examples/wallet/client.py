"""The wallet audit from Python, over the gate's gRPC service, with stubs
generated from proto/gate.proto by grpcio-tools: wallets opened with
reliable deposits, transfers made of a reliable withdrawal and a reliable
deposit, one attempt in four given a timeout too short to finish and then
retried with the same call id, and every balance checked against the
ledger at the end.

Usage: python3 client.py <gate host:port> [run name]
Needs: pip install grpcio grpcio-tools
Prints a summary; exits with status 1 if the money does not balance.
"""

import os
import random
import sys
import tempfile
import time

import grpc
import grpc_tools
from grpc_tools import protoc

# Failures after which the same call is safely sent again with its id.
TRANSIENT = {"UNAVAILABLE", "NODE_SHUTTING_DOWN", "SHARD_MOVED", "STORAGE_ERROR",
             "STALE_OWNER", "OVERLOADED", "RATE_LIMITED", "DEADLINE_EXCEEDED"}


def stubs():
    here = os.path.dirname(os.path.abspath(__file__))
    proto_dir = os.path.normpath(os.path.join(here, "..", "..", "proto"))
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    out = tempfile.mkdtemp(prefix="goverse-wallet-")
    status = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}",
                          f"--python_out={out}", f"--grpc_python_out={out}",
                          os.path.join(proto_dir, "gate.proto")])
    if status != 0:
        sys.exit(f"protoc failed with {status}")
    sys.path.insert(0, out)


def main():
    address = sys.argv[1]
    run = sys.argv[2] if len(sys.argv) > 2 else f"py{time.time_ns()}"
    stubs()
    import gate_pb2
    import gate_pb2_grpc
    from google.protobuf import any_pb2, empty_pb2, wrappers_pb2

    gate = gate_pb2_grpc.GateStub(grpc.insecure_channel(address))
    rng = random.Random(run)
    counts = {"cut_short": 0, "retries": 0}

    def code_of(error):
        code = dict(error.trailing_metadata() or ()).get("goverse-code")
        return code or error.code().name

    def reliable(wallet, method, amount, call_id):
        """Calls `method` reliably until it has an answer; returns the
        balance, or the code it was refused with."""
        request = any_pb2.Any()
        request.Pack(wrappers_pb2.Int64Value(value=amount))
        for _ in range(100):
            cut_short = rng.randrange(4) == 0
            counts["cut_short"] += cut_short
            # Some expire before the call leaves, some while it runs.
            timeout = rng.choice([0.0, rng.uniform(0.0001, 0.002)]) if cut_short else 10
            try:
                response = gate.ReliableCallObject(gate_pb2.ReliableCallObjectRequest(
                    call_id=call_id, type="Wallet", id=wallet, method=method,
                    request=request), timeout=timeout)
                value = wrappers_pb2.Int64Value()
                response.response.Unpack(value)
                return value.value
            except grpc.RpcError as error:
                code = code_of(error)
                # An attempt this client cut short ended on its own
                # deadline (DEADLINE_EXCEEDED, or CANCELLED before it left).
                if code not in TRANSIENT and not cut_short:
                    return code
                counts["retries"] += 1
        sys.exit(f"{method} {call_id} never answered")

    def balance(wallet):
        request = any_pb2.Any()
        request.Pack(empty_pb2.Empty())
        response = gate.CallObject(gate_pb2.CallObjectRequest(
            type="Wallet", id=wallet, method="Balance", request=request))
        value = wrappers_pb2.Int64Value()
        response.response.Unpack(value)
        return value.value

    wallets = [f"{run}-wallet-{i}" for i in range(4)]
    opening = 500
    for i, wallet in enumerate(wallets):
        reliable(wallet, "Deposit", opening, f"{run}-open-{i}")
    ledger = {wallet: opening for wallet in wallets}
    done = refused = 0
    for t in range(100):
        source, target = rng.sample(wallets, 2)
        amount = rng.randint(1, 300)
        withdrawn = reliable(source, "Withdraw", amount, f"{run}-transfer-{t}/debit")
        if withdrawn == "INSUFFICIENT_FUNDS":
            refused += 1
            continue
        if isinstance(withdrawn, str):
            sys.exit(f"withdrawal refused: {withdrawn}")
        deposited = reliable(target, "Deposit", amount, f"{run}-transfer-{t}/credit")
        if isinstance(deposited, str):
            sys.exit(f"deposit refused: {deposited}")
        ledger[source] -= amount
        ledger[target] += amount
        done += 1

    held = {wallet: balance(wallet) for wallet in wallets}
    mismatches = [w for w in wallets if held[w] != ledger[w]]
    print(f"transfers: {done} done, {refused} refused for want of funds")
    print(f"attempts cut short by a timeout: {counts['cut_short']}; "
          f"retried with the same call id: {counts['retries']}")
    print(f"coins before: {opening * len(wallets)}; after: {sum(held.values())}")
    for wallet in mismatches:
        print(f"MISMATCH: {wallet} holds {held[wallet]}, the ledger says {ledger[wallet]}")
    if mismatches or sum(held.values()) != opening * len(wallets):
        print("NOT BALANCED")
        sys.exit(1)
    print("balanced: no money created or lost, every wallet matches the ledger")


if __name__ == "__main__":
    main()
