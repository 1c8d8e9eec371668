"""Store contract tests (SQLite and MongoDB)."""
