"""Test helpers for the benchmark runner (a fake HTTP target)."""
