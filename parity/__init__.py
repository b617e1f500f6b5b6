"""Parity with the torch originals: the originals, converters torch <-> Flax, and checks."""
