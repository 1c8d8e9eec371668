"""Grafana dashboards for mt5-monitor as code (grafana-foundation-sdk) and their provisioning."""
