"""AlexNet as torchvision.models.alexnet writes it (parity.originals.torchvision_models.AlexNet, the course's twin)."""

from parity.originals.torchvision_models import AlexNet


def alexnet(num_classes: int = 1000, **kwargs) -> AlexNet:
    """torchvision.models.alexnet (61,100,840 parameters at 1000 classes; inputs of 63x63 and up)."""
    return AlexNet(num_classes=num_classes, **kwargs)
