"""Local dev/test infrastructure helpers (see infra/README.md)."""
