"""The training library under the commands: pure steps, the data-parallel Trainer, fit, checkpoints, resume, export."""
