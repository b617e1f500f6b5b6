"""The network a run trains: `build_model`, the registry network configured for the data's images and outputs,
its linen module or (`--api nnx`) its native NNX one behind train.trainer.nnx_model.NnxModel."""

import jax
from flax import linen as nn

import jaxcnn
from train.trainer.errors import TrainingError
from train.trainer.nnx_model import NnxModel


# How errors name each data set of train.data.sources.
DATA_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "sun": "notebook 003's sun data",
              "cifar10": "CIFAR-10"}


def _described(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def build_model(name: str, init: str, image_shape: tuple[int, int, int] = (28, 28, 1), num_outputs: int = 10,
                regression: bool = False, data_name: str = "MNIST", api: str = "linen") -> tuple[nn.Module, dict]:
    """The registry model configured for images of `image_shape` (H, W, C) and `num_outputs` classes (or
    regression targets), and the kwargs that did it (in_channels, input_size, num_classes where they differ);
    for api 'nnx', that network's native NNX one (an NnxModel).

    Raises TrainingError naming the model and the data when the model cannot take the images, has no
    num_classes, or trains with the other kind of loss (its ModelConfig's cross_entropy or mse)."""
    if name not in jaxcnn.list_models():
        raise TrainingError(f"unknown model {name!r}; available: {', '.join(jaxcnn.list_models())}")
    h, w, c = image_shape
    data = f"{data_name}'s {_described(image_shape)} images"
    probe = jaxcnn.create_model(name)
    if not hasattr(probe, "num_classes"):
        raise TrainingError(f"model {name!r} outputs a feature map, not one value per class or target: it cannot "
                            f"train on {data}")
    loss = jaxcnn.model_config(name).loss
    if (loss == "mse") != regression:
        kind, other = (("a regressor (MSE loss)", "class labels") if loss == "mse"
                       else ("a classifier (cross-entropy)", "regression targets"))
        raise TrainingError(f"model {name!r} is {kind}; {data_name} has {other}: choose a "
                            f"{'classifier' if loss == 'mse' else 'regressor such as sun_regressor'}")
    wanted = (("in_channels", c), ("input_size", h if h == w else (h, w)), ("num_classes", num_outputs))
    kwargs = {k: v for k, v in wanted if hasattr(probe, k) and getattr(probe, k) != v}
    model = jaxcnn.create_model(name, weight_init=init, **kwargs)
    try:
        out = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), jax.numpy.zeros((1, h, w, c))),
                                                 jax.numpy.zeros((1, h, w, c))))
    except (ValueError, TypeError) as err:
        raise TrainingError(f"model {name!r} does not take {data}: {err}") from err
    if out.shape != (1, num_outputs):
        raise TrainingError(f"model {name!r} gives {_described(out.shape[1:])} outputs per image on {data}, "
                            f"not the {num_outputs} the data has")
    if api == "nnx":
        try:
            return NnxModel(name, weight_init=init, **kwargs), kwargs
        except ValueError as err:  # a network registered without an NNX one
            raise TrainingError(f"--api nnx: {err}") from err
    return model, kwargs
