"""Millstream engine: the event-loop core (no public-API promises; never imports sdk)."""
