"""Orchestration coroutines: task and flow runs, scheduling, context, cancellation, transactions."""
