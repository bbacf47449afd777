"""SQLite-only tests: what exists only where the store is a file (its schema
and migrations, its permissions, hand-edited columns)."""
