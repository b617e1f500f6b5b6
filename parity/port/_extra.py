"""Handlers beyond the first set (registered on import): tensor reshuffles, normalisations, element-wise math,
resampling and padding, stochastic depth, the functional forms of layers with weights, attention and the ops of
newer blocks."""

from parity.port import _attention, _dtypes, _math, _norms, _resample, _stochastic, _tensor_ops, _weighted  # noqa: F401
