"""Training jaxcnn networks (MNIST first): `python -m train.mnist`."""
