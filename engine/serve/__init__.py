"""Serving: workers, deployments, schedules, recovery, control and the HTTP API."""
