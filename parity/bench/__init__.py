"""Benchmarks, Flax beside torch (`python -m parity.bench`, `.bench.port`), and the GPU check (`.bench.gpu_check`)."""
