"""Risk read model (DESIGN.md 12): open-position risk and equity drawdowns, for the risk metrics."""
