"""A stand-in for `grpcurl -plaintext -d BODY HOST:PORT SERVICE/METHOD`, for tests/test_docs.

grpcurl may not be installed where the suite runs. This sends the same request
from the same JSON body with grpcio and protobuf's JSON mapping, prints the answer
as grpcurl does (JSON, lowerCamelCase names) and exits 1 on an error status. It
appends each call to the file named by $GRPCURL_SHIM_LOG, so the test can check
every answer. grpcurl 1.8 takes a FieldMask only in its object form
({"paths": [...]}); protobuf's Python JSON parser only in the string form, so the
object form is set on the message directly.
"""

from __future__ import annotations

import json
import os
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v2 import booking_pb2 as pb2

PACKAGES = {"ext.maps.booking.partner.v0": pb0, "ext.maps.booking.partner.v2": pb2}


def main(argv: list[str]) -> int:
    body, rest = "{}", []
    args = iter(argv)
    for arg in args:
        if arg == "-d":
            body = next(args)
        elif arg != "-plaintext":
            rest.append(arg)
    target, full_method = rest
    service, method_name = full_method.rsplit("/", 1)
    package, service_name = service.rsplit(".", 1)
    method = (
        PACKAGES[package].DESCRIPTOR.services_by_name[service_name].methods_by_name[method_name]
    )
    request = message_factory.GetMessageClass(method.input_type)()
    document = json.loads(body)
    mask = document.pop("update_mask", None)
    json_format.ParseDict(document, request)
    if mask is not None:
        getattr(request, "update_mask").paths.extend(mask["paths"])  # noqa: B009 (typed Message)
    reply_type = message_factory.GetMessageClass(method.output_type)
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[Message, Message] = channel.unary_unary(
            f"/{full_method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply_type.FromString,
        )
        try:
            reply = call(request, timeout=10)
        except grpc.RpcError as error:
            log(full_method, body, None, f"{error.code().name}: {error.details()}")
            print(
                f"ERROR:\n  Code: {error.code().name}\n  Message: {error.details()}",
                file=sys.stderr,
            )
            return 1
    answer = json_format.MessageToJson(reply, indent=2)
    log(full_method, body, json.loads(answer), None)
    print(answer)
    return 0


def log(method: str, body: str, answer: object, error: str | None) -> None:
    path = os.environ.get("GRPCURL_SHIM_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(
                json.dumps({"method": method, "body": body, "answer": answer, "error": error})
                + "\n"
            )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
