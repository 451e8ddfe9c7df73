"""Logging for a refdesk process: one format, one level, aiohttp's access log kept quiet."""

from __future__ import annotations

import logging


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` (``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``)."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # aiohttp's access log would record URLs; ours never carry secrets, but keep it quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
