"""Helpers shared by test modules (importable as ``helpers`` because tests/ is on sys.path)."""
