"""Data sets: the in-memory `Dataset`, readers of each published format by name, and the streaming input pipelines."""
