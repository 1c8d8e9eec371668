"""What the agent tells operators: the metric catalog (imported by alerts/ and dashboards/), the collector
and /metrics exposition, tracing and logs. Importing the package itself loads nothing: alerts/ and
dashboards/ read the catalog without pulling in the sync or aiohttp."""
