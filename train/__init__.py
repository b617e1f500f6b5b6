"""Training jaxcnn networks: thin commands (`python -m train.mnist`) over the trainer (`trainer`) and data (`data`)."""
