"""Utility modules under Prefect's names."""
