"""Prometheus metrics of the kernel: appends, conflicts, projection progress, HTTP latency.

Each service process owns one registry (never the global one), so that tests and several
apps in one process do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["KernelMetrics"]


class KernelMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.appends = Counter("bapas_events_appended", "Events appended to a stream",
                               ["stream"], registry=r)
        self.conflicts = Counter("bapas_append_conflicts",
                                 "Appends refused because the case had moved on (10071)",
                                 ["stream"], registry=r)
        self.append_seconds = Histogram(
            "bapas_append_seconds", "Time to append one decision's events", ["stream"],
            buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5), registry=r)
        self.case_loads = Counter("bapas_case_loads",
                                  "Cases loaded, by where their events came from: the cache, "
                                  "the cache and the stream's tail, or the stream alone",
                                  ["stream", "source"], registry=r)
        self.case_cache_errors = Counter("bapas_case_cache_errors",
                                         "Case cache reads or writes that failed (or writes "
                                         "dropped); loads then read the stream",
                                         ["operation"], registry=r)
        self.decisions = Counter("bapas_decisions", "Commands decided, by outcome",
                                 ["command", "outcome"], registry=r)
        self.projected = Counter("bapas_projection_events", "Events applied by a projection",
                                 ["projection", "stream"], registry=r)
        self.lag = Gauge("bapas_projection_lag", "Events in the stream not yet applied",
                         ["projection", "stream"], registry=r)
        self.parked = Gauge("bapas_projection_parked_cases",
                            "Cases held back after a poison event", ["projection"], registry=r)
        self.http_seconds = Histogram(
            "bapas_http_request_seconds", "HTTP handler latency", ["method", "route", "status"],
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5), registry=r)
