"""Prefect flows: thin orchestration over the steps in ``pipeline``."""

import os

# Harvest runs on machines without internet; Prefect's telemetry would only log failed connections.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's ephemeral server (no PREFECT_API_URL set) migrates its database on first start: 30-60 s on a
# 2-core machine, longer when it is busy, against Prefect's default wait of 20 s. Set the variable to
# change it.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# Prefect's server cannot open its database in a PREFECT_HOME that does not exist yet, and then waits
# for it the whole timeout above instead of failing: make the folder a user named.
if os.environ.get("PREFECT_HOME"):
    os.makedirs(os.path.expanduser(os.environ["PREFECT_HOME"]), exist_ok=True)
