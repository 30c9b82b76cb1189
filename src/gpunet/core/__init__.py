"""The pure domain: no web, database or agent imports (enforced by import-linter)."""
