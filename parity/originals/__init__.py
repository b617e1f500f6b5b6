"""The torch originals: the course's networks, twins of torchvision's VGG/AlexNet, its CNN zoo, the notebooks' loops."""
