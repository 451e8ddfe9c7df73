"""What the bridge measures as it works: the homeserver's failures and the time each
transaction takes. The process gives the registry they live in (``refdesk/metrics.py``, which
serves them); without one they count for nobody."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# What went wrong with a request to the homeserver.
UNREACHABLE = "unreachable"  # no answer: connection refused, reset, timed out
SERVER_ERROR = "server_error"  # a 5xx answer
RATE_LIMITED = "rate_limited"  # a 429 answer
REFUSED = "refused"  # a desk action refused with a 4xx (the bot lost its power, the room is gone)
FAILURES = (UNREACHABLE, SERVER_ERROR, RATE_LIMITED, REFUSED)


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.homeserver_errors = Counter(
            "refdesk_homeserver_errors",
            "Requests to the homeserver that failed, by kind: unreachable, server_error (5xx), "
            "rate_limited (429), refused (a desk action refused with a 4xx).",
            ["kind"],
            registry=registry,
        )
        for kind in FAILURES:  # each kind shown from the start, at 0
            self.homeserver_errors.labels(kind)
        self.transaction_seconds = Histogram(
            "refdesk_transaction_seconds",
            "Time from receiving a homeserver transaction to answering it (its events stored).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )

    def homeserver_failed(self, status: int | None) -> None:
        """A request got no answer (``status`` None) or this error status. Only failures on
        the homeserver's side count here; a 4xx is often an expected answer (a ghost that
        exists, an alias taken), so refusals are counted where a desk action fails."""
        if status is None:
            kind = UNREACHABLE
        elif status == 429:
            kind = RATE_LIMITED
        elif status >= 500:
            kind = SERVER_ERROR
        else:
            return
        self.homeserver_errors.labels(kind).inc()

    def action_refused(self) -> None:
        self.homeserver_errors.labels(REFUSED).inc()
