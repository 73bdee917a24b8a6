"""A Python client of factum's gRPC contract, with stubs generated from
proto/factum/v1/eventstore.proto at test time: appends, reads, a conflict,
bad input, and a subscription that catches up then goes live.

Usage: client.py STUBS_DIR ADDRESS TOKEN
Prints one JSON object with what it saw; exits non-zero on any surprise.
"""

import json
import sys
import uuid

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from factum.v1 import eventstore_pb2 as pb  # noqa: E402
from factum.v1 import eventstore_pb2_grpc as rpc  # noqa: E402

address, token = sys.argv[2], sys.argv[3]
auth = (("authorization", f"Bearer {token}"),)
stub = rpc.EventStoreStub(grpc.insecure_channel(address))
stream = pb.StreamId(aggregate_type="Counter", aggregate_id="py-1")


def event(amount):
    occurred_at = Timestamp()
    occurred_at.GetCurrentTime()
    return pb.NewEvent(
        event_id=str(uuid.uuid4()),
        event_type="incremented",
        schema_version=1,
        payload=json.dumps({"amount": amount}),
        metadata=pb.Metadata(user=json.dumps({"client": "python"})),
        occurred_at=occurred_at,
    )


appended = stub.Append(
    pb.AppendRequest(stream=stream, expected=pb.ExpectedVersion(no_stream=True), events=[event(1), event(2), event(3)]),
    metadata=auth,
)
assert appended.stream_version == 3, appended

read = [e for page in stub.ReadStream(pb.ReadStreamRequest(stream=stream, from_version=1), metadata=auth) for e in page.events]
assert [json.loads(e.payload)["amount"] for e in read] == [1, 2, 3], read
log = [e for page in stub.ReadAll(pb.ReadAllRequest(after=0, limit=100), metadata=auth) for e in page.events]

try:
    stub.Append(pb.AppendRequest(stream=stream, expected=pb.ExpectedVersion(exact=1), events=[event(9)]), metadata=auth)
    raise SystemExit("a stale expected version was accepted")
except grpc.RpcError as error:
    conflict_code = error.code().name
    detail = dict(error.trailing_metadata() or ()).get("factum-error-bin")
    conflict = pb.ErrorDetail.FromString(detail).conflict
    assert (conflict.expected.exact, conflict.actual) == (1, 3), conflict

bad = event(4)
bad.payload = "{not json"
try:
    stub.Append(pb.AppendRequest(stream=stream, expected=pb.ExpectedVersion(any=True), events=[bad]), metadata=auth)
    raise SystemExit("a payload that is not JSON was accepted")
except grpc.RpcError as error:
    bad_payload_code = error.code().name

try:
    stub.Head(pb.HeadRequest())
    raise SystemExit("a call without a token was answered")
except grpc.RpcError as error:
    no_token_code = error.code().name

subscription = stub.SubscribeStream(pb.SubscribeStreamRequest(stream=stream, from_version=1), metadata=auth)
seen = []
for page in subscription:
    seen.extend(json.loads(e.payload)["amount"] for e in page.events)
    if len(seen) == 3:
        stub.Append(pb.AppendRequest(stream=stream, expected=pb.ExpectedVersion(exact=3), events=[event(4)]), metadata=auth)
    if len(seen) >= 4:
        break
subscription.cancel()

print(json.dumps({
    "appended_version": appended.stream_version,
    "read": [e.version for e in read],
    "log_positions": [e.position for e in log],
    "tenant": read[0].metadata.tenant,
    "conflict": conflict_code,
    "bad_payload": bad_payload_code,
    "no_token": no_token_code,
    "subscribed": seen,
}))
