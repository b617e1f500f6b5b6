"""Weights from the web: torchvision's published ImageNet weights, downloaded into a cache, verified, converted."""
