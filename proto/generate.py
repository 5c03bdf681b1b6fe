"""Regenerate proto/'s Python code from its .proto sources: `python -m leasehold.proto.generate`.

`python -m leasehold.proto.generate --check` regenerates into a temporary directory and
exits 1, listing the files, if anything committed differs (the test suite runs
the same check, so stale generated code fails CI).

Outputs per source, next to it: `*_pb2.py` and `*_pb2.pyi` (protobuf messages and
their types), `*_grpc.py` (grpclib services: what the server subclasses) and
`*_pb2_grpc.py` (grpcio stubs: what the end-to-end tests and bench call with) and
their types, `*_pb2_grpc.pyi` (mypy-protobuf's protoc-gen-mypy_grpc).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
# Named through leasehold/proto (a link to proto/), so the generated imports are leasehold.proto...
SOURCES = (
    "leasehold/proto/v2/booking.proto",
    "leasehold/proto/v0/booking.proto",
    "leasehold/proto/admin/v1/inventory.proto",
)
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_grpc.py", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generated_files() -> list[str]:
    return [source.removesuffix(".proto") + suffix for source in SOURCES for suffix in SUFFIXES]


def _plugin(name: str) -> Path:
    """A protoc plugin script installed beside this interpreter (grpclib, mypy-protobuf)."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the project's `test` extra")
    return Path(found)


def generate(out_dir: Path) -> None:
    """Run protoc (from grpcio-tools) with the grpclib plugin into `out_dir`."""
    plugin = _plugin("protoc-gen-grpclib_python")
    grpc_stubs = _plugin("protoc-gen-mypy_grpc")
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "protoc",
        f"--proto_path={ROOT}",
        f"--proto_path={include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--grpclib_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        "--mypy_grpc_opt=quiet",  # else it prints "Writing mypy to ..." on every check
        f"--plugin=protoc-gen-grpclib_python={plugin}",
        f"--plugin=protoc-gen-mypy_grpc={grpc_stubs}",
        *SOURCES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))


def stale_files() -> list[str]:
    """Generated files whose committed content differs from a fresh generation."""
    with tempfile.TemporaryDirectory() as temp:
        generate(Path(temp))
        return [
            name
            for name in generated_files()
            if not (ROOT / name).exists()
            or not filecmp.cmp(Path(temp) / name, ROOT / name, shallow=False)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leasehold.proto.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {name} (run: python -m leasehold.proto.generate)")
        return 1 if stale else 0
    with tempfile.TemporaryDirectory() as temp:
        generate(Path(temp))
        for name in generated_files():
            shutil.copyfile(Path(temp) / name, ROOT / name)
            print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
