"""The only database user: the write-behind writer, reads, migrations and the schema."""
