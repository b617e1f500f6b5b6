"""Notebook 002's training loop in torch beside train.trainer.step's jitted Flax step, step by step."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxcnn
from parity.checks import check, convert
from parity.originals import torch_models
from train.trainer import step as step_lib
from train.trainer.optimizers import torch_adam


def lenet5_adam_losses(images: np.ndarray, labels: np.ndarray, steps: int = 100, batch_size: int = 100,
                       seed: int = 0, double: bool = False) -> tuple[list[float], list[float]]:
    """Per-step losses of `steps` Adam(1e-3) steps of lenet5_mnist, torch and Flax, from the same initial weights
    (torch's init, converted) and the same batch order (train.trainer.step.epoch_order). images: (N, 28, 28, 1) uint8."""
    torch.manual_seed(seed)
    module = torch_models.create("lenet5_mnist")
    model = jaxcnn.create_model("lenet5_mnist")
    variables = convert.torch_to_flax(module, model)
    with jax.enable_x64(double), check.exact_numerics():
        dtype = jnp.float64 if double else jnp.float32
        if double:
            module = module.double()
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), variables["params"])
        tx = torch_adam(1e-3)
        state = step_lib.TrainState(jnp.zeros((), jnp.int32), params, {}, tx.init(params))
        train_step = jax.jit(step_lib.make_train_step(model, tx, "raw"))
        device_images, device_labels = jnp.asarray(images), jnp.asarray(labels)

        # notebook 002: X_train.unsqueeze(1).float(), Adam(lr=1e-3), CrossEntropyLoss, batches X_train[order[...]]
        x_train = torch.from_numpy(np.array(images[..., 0])).unsqueeze(1).to(torch.float64 if double else torch.float32)
        y_train = torch.from_numpy(np.array(labels, np.int64))
        optimizer = torch.optim.Adam(module.parameters(), lr=1.0e-3)
        loss = torch.nn.CrossEntropyLoss()
        order = step_lib.epoch_order(seed, 1, len(labels), batch_size)
        torch_losses, flax_losses = [], []
        for indices in order[:steps]:
            optimizer.zero_grad()
            loss_value = loss(module.forward(x_train[indices]), y_train[indices])
            loss_value.backward()
            optimizer.step()
            torch_losses.append(float(loss_value.detach()))
            state, flax_loss = train_step(state, device_images, device_labels, jnp.asarray(indices), jax.random.key(0))
            flax_losses.append(float(flax_loss))
    return torch_losses, flax_losses
