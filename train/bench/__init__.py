"""Benchmarks of the training step on this backend, torch-free: `python -m train.bench.loop`, `train.bench.layers`."""
