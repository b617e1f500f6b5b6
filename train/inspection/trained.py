"""A training run's newest checkpoint as the model it trained (built as the run built it) and its variables."""

import dataclasses
from pathlib import Path

import jax

import jaxcnn
from train.trainer.checkpoint import Checkpoints
from train.trainer.fit import Settings, build_model, optimizer_of
from train.trainer.nnx_model import NnxModel
from train.trainer.step import init_state, variables_of


class InspectError(RuntimeError):
    """The checkpoint or the request cannot be inspected; the message says why."""


@dataclasses.dataclass
class Trained:
    model: object
    variables: dict
    config: dict
    epoch: int
    model_kwargs: dict = dataclasses.field(default_factory=dict)  # what the run built the registry model with


def load_trained(checkpoint: str | Path, model_name: str | None = None) -> Trained:
    """The newest checkpoint of a training run as a model (built as the run built it) and its variables."""
    out = Path(checkpoint)
    out = out.parent if out.name == "checkpoints" else out
    if not (out / "checkpoints").is_dir():
        raise InspectError(f"{out} holds no checkpoints/ directory (python -m train.mnist --out DIR writes one)")
    checkpoints = Checkpoints(out)
    try:
        epoch = checkpoints.latest()
        if epoch is None:
            raise InspectError(f"{out / 'checkpoints'} holds no finished checkpoint")
        config = checkpoints.meta(epoch)["config"]
        if model_name and model_name != config["model"]:
            raise InspectError(f"--model {model_name} but {out} was trained with --model {config['model']}")
        nnx_run = config.get("api") == "nnx"
        if "model_kwargs" in config:
            kwargs = config["model_kwargs"]
            build = NnxModel if nnx_run else jaxcnn.create_model
            model = build(config["model"], weight_init=config["init"], **kwargs)
        else:  # a run from before checkpoints recorded them: train.mnist's 28x28x1, 10 classes
            model, kwargs = build_model(config["model"], config["init"])
        # the run's optimizer, for the structure of its state (a schedule's step count: its length is immaterial)
        settings = Settings(**{f.name: config[f.name] for f in dataclasses.fields(Settings) if f.name in config})
        tx, _ = optimizer_of(settings, model, 1)
        state, _ = checkpoints.restore(epoch, init_state(model, tx, jax.random.key(0)))
    finally:
        checkpoints.close()
    model, variables = model.linen(variables_of(state)) if nnx_run else (model, variables_of(state))  # its twin
    return Trained(model, variables, config, epoch, kwargs)
