"""Pure model: ids, records, states and their transitions, specs (no loop, thread, I/O or SQL)."""
