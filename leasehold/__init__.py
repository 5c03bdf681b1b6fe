"""Leasehold: a booking server for the Maps Booking partner gRPC API.

One import namespace for the whole project. Its packages and who may import whom
(checked by tests/test_import_rules.py):

- `leasehold.core`: the pure domain (no I/O, no clock); imports none of ours.
- `leasehold.shards`: the trio shard actors, journal and snapshots; imports core.
- `leasehold.link`: the internal link between gateway workers and shard
  processes; imports core and shards.
- `leasehold.gateway`: the gRPC services; imports core, shards and link.
- `leasehold.health`: the health stream (websocket, frames, `watch`, dashboard);
  imports shards.
- `leasehold.proto`: the .proto sources and their generated code.
- `leasehold.bench`: benchmarks; imported only by the CLI's `bench` subcommand.
- the composition root: `cli` (the `leasehold` command), `_flags` (its parser),
  `_serve_cmd` (flags to a running server), `_serve_settings` (the settings every
  role shares), `_announce` (the start-up events both modes log), `_run` (the
  one-process mode: signals, start and stop events), `_app` (assembles shards,
  health stream and gRPC in one process), `_grpc_parts` (the gRPC side it shares
  with a gateway worker), `tuning` (GC and GIL settings of the process); the process
  tree: `_supervisor`, `_tree_run`, `_tree`, `_tree_figures`, `_child` (with
  `_shard_main` and `_gateway_main`, each role's entry), `_shard_process`,
  `_gateway_worker`.

Outside a package, import only its `__init__` face, never its `_private` modules.
Each role imports what it runs and no more (tests/test_child_imports.py): the
supervisor no gRPC, protobuf or shard runtime, a gateway worker no trio or health
stream, a shard process no asyncio. So the faces of gateway, shards, link and
health import each name when first asked for, and `cli` each subcommand's modules
when it is chosen.
"""

from __future__ import annotations

__version__: str  # looked up when first asked for (below)


def __getattr__(name: str) -> str:
    """`__version__`, from the installed package's metadata on first use: importing
    importlib.metadata (and the email package it uses) cost each process of the tree
    ~10 ms of CPU at its start, and a shard process never asks for the version."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("leasehold")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
