"""Prefect flows: thin orchestration over the steps in ``pipeline``."""

import os

# Harvest runs on machines without internet; Prefect's telemetry would only log failed connections.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
