"""Prometheus alerting and recording rules for mt5-monitor, generated from code (mixin style)."""
