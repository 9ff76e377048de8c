"""Metrics, reports and figures read from run directories (no training code)."""
