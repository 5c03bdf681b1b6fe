"""`leasehold feed apply|diff` and `leasehold inventory`: every error a user can cause is one
line and an exit code (2 usage, 1 failure), and each kind of feed file becomes its request."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from test_cli_errors import leasehold, one_error_line

from leasehold._feed_cmd import CommandError, _request, summary
from leasehold.proto.admin.v1 import inventory_pb2 as pb

pytestmark = pytest.mark.timeout(60)

WINDOW = {
    "start_timestamp_restrict": 100,
    "end_timestamp_restrict": "200",
    "merchant_id_restrict": "m1",
    "availability": [
        {"merchant_id": "m1", "service_id": "s", "start_sec": 150, "duration_sec": 60}
    ],
}


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_complete_feed_is_sent_whole_and_an_incremental_one_as_windows(tmp_path: Path) -> None:
    whole = write(tmp_path / "whole.json", {"service_availability": []})
    request = _request(whole, dry_run=True)
    assert isinstance(request, pb.ApplyFeedRequest)
    assert (request.feed_json, request.dry_run) == (whole.read_bytes(), True)
    document = {"metadata": {"processing_instruction": "PROCESS_AS_INCREMENTAL"}}
    windows = write(tmp_path / "w.json", dict(document, service_availability=[WINDOW]))
    request = _request(windows, dry_run=False)
    assert isinstance(request, pb.ReplaceServiceAvailabilityRequest)
    (item,) = request.service_availability
    assert (item.start_timestamp_restrict, item.end_timestamp_restrict) == (100, 200)
    assert item.availability[0].start_sec == 150


def test_an_incremental_feed_without_its_window_is_refused(tmp_path: Path) -> None:
    document = {
        "metadata": {"processing_instruction": "PROCESS_AS_INCREMENTAL"},
        "service_availability": [{"availability": []}],
    }
    with pytest.raises(CommandError, match="need start_timestamp_restrict"):
        _request(write(tmp_path / "w.json", document), dry_run=False)


def test_feed_apply_errors_are_one_line(tmp_path: Path) -> None:
    missing = leasehold("feed", "apply", str(tmp_path / "nope.json"), "--target", "127.0.0.1:1")
    assert missing.returncode == 2
    assert "cannot read" in one_error_line(missing)
    garbage = tmp_path / "g.json"
    garbage.write_text("{", encoding="utf-8")
    not_json = leasehold("feed", "diff", str(garbage), "--target", "127.0.0.1:1")
    assert not_json.returncode == 2
    assert "is not JSON" in one_error_line(not_json)
    feed = write(tmp_path / "f.json", {"service_availability": []})
    bad_target = leasehold("feed", "apply", str(feed), "--target", "nowhere")
    assert bad_target.returncode == 2
    assert "is not HOST:PORT" in one_error_line(bad_target)
    target = f"127.0.0.1:{closed_port()}"
    unreachable = leasehold("feed", "apply", str(feed), "--target", target, "--timeout", "5")
    assert unreachable.returncode == 1
    assert f"cannot reach {target}" in one_error_line(unreachable)


def test_inventory_needs_a_merchant_and_a_target() -> None:
    result = leasehold("inventory", "--target", "127.0.0.1:1")
    assert result.returncode == 2
    assert "--merchant" in result.stderr


def test_the_summary_line_names_every_count() -> None:
    report = pb.ChangeReport(added=1, changed=2, removed=3, kept_booked=1, unchanged=4)
    assert summary(report) == (
        "applied: 1 added, 2 changed, 3 removed, 1 kept because booked "
        "(4 unchanged, 0 leases released)"
    )
    report.dry_run = True
    assert summary(report).startswith("would change: 1 added")
