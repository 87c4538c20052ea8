"""Baseline servers the benchmarks compare TritonGate with (each run by uvicorn in a subprocess)."""
