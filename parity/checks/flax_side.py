"""The Flax side of a check: a linen module with its variables, or a jaxcnn NNX network, run as each API runs.

The checks (check.compare_outputs, training.compare_gradients, steps.compare_batchnorm_training and
steps.compare_optimizer_steps) run torch and the float64 referee as before and the Flax side through one of
these, so the same referee judges both APIs. A side answers in linen's terms (variables {'params': ...,
'batch_stats': ...}; dropout masks as linen's 'intermediates', {'fc_2': {'keep': (mask,)}}), which
jaxcnn.interchange maps onto torch's keys through `side.linen`: the linen module, or the NNX network's linen twin.

An NNX side runs the network as its user does: `train()` / `eval()`, `nnx.value_and_grad`, `nnx.Optimizer`,
BatchNorm statistics updated in place, each Dropout layer drawing from its own stream (the checks' `key` is
linen's; the masks the NNX run drew are replayed in torch all the same). It works on its own copy of the network
(`nnx.clone`), as a linen side works on its own variables.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import nnx

import jaxcnn

# (x NHWC, targets, key) -> (loss, linen intermediates): one optimizer step of a side, updating it.
Step = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, Any]]


def flax_loss(kind: str, y: jax.Array, targets: jax.Array) -> jax.Array:
    """'mse': mean squared error; else cross entropy of logits y (N, classes) with integer labels (N,)."""
    if kind == "mse":
        return jnp.mean(jnp.square(y - targets))
    return optax.softmax_cross_entropy_with_integer_labels(y, targets).mean()


def flax_step_fn(model: nn.Module, kind: str, train: bool) -> Callable:
    """(params, state, x, targets, key) -> ((loss, (y, new_batch_stats, intermediates)), grads), jitted."""

    def loss_fn(params, state, x, targets, key):
        variables = {**state, "params": params}
        if train:
            y, new = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                                 rngs={"dropout": key})
        else:
            y, new = model.apply(variables, x), {}
        return flax_loss(kind, y, targets), (y, new.get("batch_stats", state.get("batch_stats")),
                                             new.get("intermediates", {}))

    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def _float64(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


class LinenSide:
    """A linen module (`linen`) and its variables, which the side's training calls replace."""

    def __init__(self, model: nn.Module, variables: Any):
        self.linen, self.state = model, dict(variables)

    def variables(self) -> dict:
        return self.state

    def predict(self, x: jax.Array) -> jax.Array:
        """Inference (train=False) on NHWC x."""
        return self.linen.apply(self.state, x)

    def gradients(self, kind: str, x: jax.Array, targets: jax.Array, train: bool, key: jax.Array):
        """(loss, gradients as linen 'params', intermediates) of one forward and backward; the side unchanged."""
        rest = {k: v for k, v in self.state.items() if k != "params"}
        (loss, (_, _, intermediates)), grads = flax_step_fn(self.linen, kind, train)(
            self.state["params"], rest, x, targets, key)
        return loss, grads, intermediates

    def train_forward(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, Any]:
        """(output, intermediates) of a train-mode forward with dropout key `key`; keeps the new batch_stats."""
        y, new = self.linen.apply(self.state, x, train=True, mutable=["batch_stats", "intermediates"],
                                  rngs={"dropout": key})
        self.state = {**self.state, **({"batch_stats": new["batch_stats"]} if "batch_stats" in new else {})}
        return y, new.get("intermediates")

    def trainer(self, tx: optax.GradientTransformation, kind: str) -> Step:
        """One train-mode optimizer step per call: jax.value_and_grad, tx.update, optax.apply_updates."""
        step_fn, opt_state = flax_step_fn(self.linen, kind, train=True), tx.init(self.state["params"])

        @jax.jit
        def apply_updates(grads, opt_state, params):
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        def step(x, targets, key):
            nonlocal opt_state
            rest = {k: v for k, v in self.state.items() if k != "params"}
            (loss, (_, batch_stats, intermediates)), grads = step_fn(self.state["params"], rest, x, targets, key)
            params, opt_state = apply_updates(grads, opt_state, self.state["params"])
            self.state = {**rest, "params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
            return loss, intermediates

        return step

    def in_float64(self) -> "LinenSide":
        """The side with float64 variables (under jax.enable_x64)."""
        return LinenSide(self.linen, _float64(self.state))


def _value_and_grad(net: nnx.Module, x: jax.Array, targets: jax.Array, kind: str):
    """(loss, gradients w.r.t. the nnx.Params, captured dropout masks) of net(x), in the net's mode."""
    def loss_fn(net):
        y, intermediates = nnx.capture(net, nnx.Intermediate)(x)
        return flax_loss(kind, y, targets), intermediates

    (loss, intermediates), grads = nnx.value_and_grad(loss_fn, has_aux=True)(net)
    return loss, grads, intermediates


_nnx_gradients = nnx.jit(_value_and_grad, static_argnames="kind")


@functools.partial(nnx.jit, static_argnames="kind")
def _nnx_train_step(net: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, targets: jax.Array, kind: str):
    loss, grads, intermediates = _value_and_grad(net, x, targets, kind)
    optimizer.update(net, grads)  # in place, like torch's optimizer.step()
    return loss, intermediates


@nnx.jit
def _nnx_forward(net: nnx.Module, x: jax.Array):
    return nnx.capture(net, nnx.Intermediate)(x)


def _intermediates(state: nnx.State) -> dict:
    return jaxcnn.linen_variables(state).get("intermediates", {})


class NNXSide:
    """A jaxcnn NNX network (a copy of it: `net`) and its linen twin (`linen`), for the checks."""

    def __init__(self, net: nnx.Module):
        self.net, self.linen = nnx.clone(net), jaxcnn.linen_twin(net)

    def variables(self) -> dict:
        return jaxcnn.linen_variables(self.net)

    def predict(self, x: jax.Array) -> jax.Array:
        """`net.eval(); net(x)` on NHWC x."""
        self.net.eval()
        return self.net(x)

    def gradients(self, kind: str, x: jax.Array, targets: jax.Array, train: bool, key: jax.Array):
        """As LinenSide.gradients, by nnx.value_and_grad of a copy in train or eval mode (`key` unused)."""
        net = nnx.clone(self.net)
        net.train() if train else net.eval()
        loss, grads, intermediates = _nnx_gradients(net, x, targets, kind)
        return loss, jaxcnn.linen_variables(grads)["params"], _intermediates(intermediates)

    def train_forward(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, Any]:
        """`net.train(); net(x)`: BatchNorm statistics updated in place (`key` unused)."""
        self.net.train()
        y, intermediates = _nnx_forward(self.net, x)
        return y, _intermediates(intermediates)

    def trainer(self, tx: optax.GradientTransformation, kind: str) -> Step:
        """One train-mode step per call: nnx.value_and_grad and `nnx.Optimizer(net, tx, wrt=nnx.Param).update`."""
        self.net.train()
        optimizer = nnx.Optimizer(self.net, tx, wrt=nnx.Param)

        def step(x, targets, key):
            loss, intermediates = _nnx_train_step(self.net, optimizer, x, targets, kind)
            return loss, _intermediates(intermediates)

        return step

    def in_float64(self) -> "NNXSide":
        """The side with a float64 copy of the network (under jax.enable_x64)."""
        graphdef, state = nnx.split(self.net)
        return NNXSide(nnx.merge(graphdef, _float64(state)))


def flax_side(model: nn.Module | nnx.Module, variables: Any = None) -> LinenSide | NNXSide:
    """The side of a linen module with its `variables`, or of a jaxcnn NNX network (which holds its own: then
    `variables` is None)."""
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise ValueError("an NNX network holds its variables: pass variables=None")
        return NNXSide(model)
    return LinenSide(model, variables)
