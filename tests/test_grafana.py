"""The example Grafana dashboard asks only for metrics the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from leasehold.health._metrics import MetricsSnapshot, render
from leasehold.health.frames import GatewayFigures
from leasehold.shards import SERVICE_TIME_BOUNDS_S, HistogramSnapshot, JournalFigures, ShardStats

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
# A metric name in PromQL: not a function (followed by "(") nor a label (followed by "=").
NAME = re.compile(r"\b((?:leasehold|process)_[a-z_]+)\b(?!\s*[(=])")
EMPTY = (0,) * (len(SERVICE_TIME_BOUNDS_S) + 1)


def exported_names() -> set[str]:
    shard = ShardStats(
        shard_id=0,
        mailbox_depth=0,
        mailbox_capacity=8,
        live_leases=0,
        confirmed_bookings=0,
        operations=1,
        expirations=0,
        refused=0,
        deadline_dropped=0,
        shed=0,
        last_expiry_lag_s=0.0,
        operations_by_kind={"CreateLease": 1},
        service_time_counts=EMPTY,
        journal=JournalFigures(0.0, 0.0, 0, HistogramSnapshot(EMPTY, 0.0)),
        service_times_by_kind={"CreateLease": HistogramSnapshot(EMPTY, 0.0)},
    )
    gateway = GatewayFigures({"OVERLOADED": 1}, 16, 0, 50.0, 0.0, 0.0)
    text = render(MetricsSnapshot((shard,), 0, 0, 0, (("0", gateway),))).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_query_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    names = {name for expr in exprs for name in NAME.findall(expr)}
    assert "leasehold_requests_total" in names  # the pattern finds names at all
    assert names <= exported_names(), names - exported_names()


def test_panels_use_the_dashboards_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
