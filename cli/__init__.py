"""The `tritongate` command: the composition root over serving/, export/, api/ and benchmarks/."""
