"""Logs: run loggers, print capture, rendering and the sink into the store."""
