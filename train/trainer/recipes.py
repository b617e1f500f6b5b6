"""Training recipes: the notebooks' (by model and data set) and named ones that `--recipe NAME` runs.

A recipe fills the settings a command line leaves out. `lr` is the constant learning rate, or the peak of the
one-cycle schedule (`schedule="onecycle"`, optax.cosine_onecycle_schedule: cosine warm-up over `warmup_fraction`
of all steps from lr/25, then cosine annealing to lr/25e4; torch's OneCycleLR has the same shape with its phase
boundaries one step earlier, up to 3.6% of lr apart over 100 steps).
"""

import jaxcnn

# Any registry model on data its notebook did not train it on (the notebooks' own recipes are in each model's
# config: jaxcnn.model_config(name).recipe, with the data set they trained on).
DEFAULT = dict(preprocess="normalize", optimizer="adam", lr=1e-3, batch_size=64, epochs=1)

# New recipes (the notebooks' stay as they are), found on this project's 2-core CPU with python -m parity.bench.
NAMED = {
    # Notebook 004's network, Adam one-cycle peaking at 4e-3 after 25% of the steps, batch 128: initialisation
    # seeds 0, 1, 2 pass 99% after epochs 3, 3, 2 (99.26, 99.27, 99.09%).
    "fast_99": dict(model="mnist_cnn", preprocess="normalize", optimizer="adam", schedule="onecycle", lr=4e-3,
                    warmup_fraction=0.25, batch_size=128, epochs=3),
    # The same network, one epoch: Adam one-cycle peaking at 5e-3, batch 64 (notebook 004's), and label smoothing
    # 0.1 (torch: CrossEntropyLoss(label_smoothing=0.1)). Seeds 0, 1, 2: 99.10, 99.16, 99.12% after the epoch.
    # Without label smoothing this network ends its one epoch at 98.84-99.00% (peaks 2e-3..5e-3, batches
    # 16..64, torch or LeCun init); batch 128 with peak 6e-3 reached 99.02% (seed 0): too close.
    "one_epoch_99": dict(model="mnist_cnn", preprocess="normalize", optimizer="adam", schedule="onecycle", lr=5e-3,
                         warmup_fraction=0.25, batch_size=64, epochs=1, label_smoothing=0.1),
    # CIFAR-10 (python -m train.cifar10's default): notebook 004's "10 classes, like a cifar10" network, which
    # its notebook never trained. Adam one-cycle peaking at 2e-3, batch 128, torchvision's CIFAR augmentation
    # (RandomCrop(32, padding=4) + RandomHorizontalFlip), 30 epochs.
    "cifar10_conv_mlp": dict(model="cifar_conv_mlp", preprocess="normalize", optimizer="adam", schedule="onecycle",
                             lr=2e-3, warmup_fraction=0.25, batch_size=128, epochs=30, augment="crop_flip"),
    # CIFAR-10 with notebook 004's MNIST network taking 3 channels (two padded 3x3 convs of 32, max pools, a
    # 100-unit layer): the same schedule and augmentation, label smoothing 0.1.
    "cifar10_cnn": dict(model="mnist_cnn", preprocess="normalize", optimizer="adam", schedule="onecycle", lr=4e-3,
                        warmup_fraction=0.25, batch_size=128, epochs=30, augment="crop_flip", label_smoothing=0.1),
    # An image folder (python -m train.folder's default), fine-tuning pretrained weights as torchvision's
    # transfer-learning tutorial does: Adam 1e-4, the new head at 1e-3, batch 32, RandomResizedCrop + flip.
    "folder_finetune": dict(preprocess="normalize", optimizer="adam", lr=1e-4, lr_head=1e-3, batch_size=32, epochs=5,
                            augment="random_resized_crop"),
}


def for_model(model: str, dataset: str = "mnist") -> dict:
    """The recipe of `model`'s notebook where it trained on `dataset` (notebook 002's lenet5_mnist and notebook
    004's mnist_cnn on MNIST, notebook 003's sun_regressor on its sun images), else DEFAULT: preprocess,
    optimizer, lr, batch_size, epochs (and weight_decay where it has one)."""
    config = jaxcnn.model_config(model) if model in jaxcnn.list_models() else jaxcnn.ModelConfig()
    if not config.recipe or config.recipe.get("data") != dataset:
        return dict(DEFAULT)
    return {"preprocess": config.preprocess} | {k: v for k, v in config.recipe.items() if k != "data"}


def named(name: str) -> dict:
    if name not in NAMED:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(NAMED))}")
    return dict(NAMED[name])
