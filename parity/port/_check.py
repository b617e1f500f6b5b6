"""The parity report of a port: forward outputs and gradients (eval mode, and train mode where BatchNorm or
Dropout make it differ, Dropout masks replayed), BatchNorm's updated statistics, the weight round trip; each
judged against the torch module in float64 (parity.checks.referee)."""

import copy
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.fx as fx
from flax import linen as nn, nnx
from flax.traverse_util import flatten_dict

from parity.checks import referee, training
from parity.checks.check import exact_numerics
from parity.port._layout import Layout
from parity.port._nnx_view import view_of
from parity.port._report import Report
from parity.port._record import plain_output
from parity.port._trace import STOCHASTIC_DEPTH, flat_trace, innermost_module, is_random
from parity.port._weights import load_state_dict, numpy_state_dict, torch_state_dict

FORWARD_TOLERANCE, GRADIENT_TOLERANCE = 1e-5, 1e-4


DROPOUTS = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)


class _Replay(fx.Interpreter):
    """Runs a traced module with each dropout applying a given mask (node name -> keep mask, torch layout)."""

    def __init__(self, gm: fx.GraphModule, masks: dict[str, torch.Tensor]):
        super().__init__(gm)
        self.masks = masks

    def run_node(self, n: fx.Node) -> Any:
        if n.name not in self.masks:
            return super().run_node(n)
        x = self.env[n.args[0]] if isinstance(n.args[0], fx.Node) else n.args[0]
        if n.op == "call_module":
            rate = self.module.get_submodule(n.target).p
        else:
            rate = n.kwargs.get("p", n.kwargs.get("drop_prob", n.args[1] if len(n.args) > 1 else 0.5))  # all: 2nd
        keep = self.masks[n.name].to(x.device)
        if getattr(n.target, "__name__", None) in STOCHASTIC_DEPTH:  # input * (noise / survival)
            return x * (keep.to(x.dtype) / (1.0 - rate))
        return torch.where(keep, x / (1.0 - rate), 0.0)


def _outputs(y) -> list:
    y = plain_output(y)
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _loss_torch(outputs, targets):
    """parity.checks.training's MSE of each output against its target, summed over the outputs."""
    return sum(training.torch_loss("mse", y, torch.as_tensor(t, dtype=y.dtype)) for y, t in zip(outputs, targets))


def _torch_run(module: torch.nn.Module, x: np.ndarray, targets: list, masks: dict, train: bool):
    """(outputs, loss, gradients, state_dict after) of one forward/backward of a copy of `module`."""
    module = copy.deepcopy(module)
    module.train(train)
    run = _Replay(flat_trace(module, (torch.as_tensor(x),)), masks).run if masks else module
    with exact_numerics():
        outputs = _outputs(run(torch.as_tensor(x)))
        loss = _loss_torch(outputs, targets)
        loss.backward()
    grads = {n: p.grad.detach().double().numpy() for n, p in module.named_parameters() if p.grad is not None}
    state = {k: v.detach().double().numpy() for k, v in module.state_dict().items()}
    return [o.detach().double().numpy() for o in outputs], float(loss.detach()), grads, state


def _references(module: torch.nn.Module, x: np.ndarray) -> dict[tuple, str]:
    """The dropouts of torch's own (flat) trace of `module` in train mode, by the reference the port's
    TORCH_DROPOUTS gives: ('module', path) -> node name, ('function', innermost module path, k) -> node name."""
    references, counts = {}, {}
    training = module.training
    module.train()
    try:
        graph = flat_trace(module, (torch.as_tensor(x),)).graph
    finally:
        module.train(training)
    for n in graph.nodes:
        if n.op == "call_module" and isinstance(module.get_submodule(n.target), DROPOUTS):
            references[("module", n.target)] = n.name
        elif is_random(n):
            where = innermost_module(n)
            references[("function", where, counts.get(where, 0))] = n.name
            counts[where] = counts.get(where, 0) + 1
    return references


def _torch_masks(module: torch.nn.Module, model: nn.Module, intermediates: Any, x: np.ndarray
                 ) -> dict[str, torch.Tensor]:
    """The Flax run's dropout masks, per node of torch's trace, in torch's layout."""
    sown = {"/".join(path[:-1]): list(masks) for path, masks in flatten_dict(intermediates or {}).items()
            if path[-1] == "keep"}
    references = _references(module, x)
    masks = {}
    for reference, flax_path, perm, flat_from in type(model).TORCH_DROPOUTS:
        if sown.get(flax_path):
            mask = sown[flax_path].pop(0)
            layout = Layout(tuple(perm), flat_from and tuple(flat_from))
            masks[references[tuple(reference)]] = torch.from_numpy(layout.to_torch(mask).copy())
    return masks


def _flax_run(model: nn.Module, variables: dict, x: np.ndarray, targets: list, train: bool, seed: int):
    output_layouts = []

    def loss_fn(params):
        v = {**variables, "params": params}
        if train:
            y, new = model.apply(v, x, train=True, mutable=["batch_stats", "intermediates"],
                                 rngs={"dropout": jax.random.key(seed)})
        else:
            y, new = model.apply(v, x), {}
        ys = _outputs(y)
        output_layouts[:] = [Layout.channels_last(o.ndim) for o in ys]
        ts = [jnp.asarray(Layout.channels_last(t.ndim).to_flax(t)) for t in targets]
        return sum(training.flax_loss("mse", a, t) for a, t in zip(ys, ts)), (ys, new)

    with exact_numerics():
        (loss, (ys, new)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
    outputs = [l.to_torch(np.asarray(o, np.float64)) for l, o in zip(output_layouts, ys)]
    return outputs, float(loss), grads, new


def _judge_mapping(flax: dict, torch_: dict, float64: dict, tolerance: float, floor_fraction: float = 0.0,
                   stepped: list[dict] = ()):
    return referee.combine(referee.judge_each(flax, torch_, float64, tolerance, _floor(float64, floor_fraction),
                                              stepped).values())


def _floor(float64: dict, fraction: float) -> float:
    """`fraction` of the largest magnitude among the tensors: a tensor that is 0 exactly is judged on this scale."""
    return fraction * max((float(np.max(np.abs(g))) for g in float64.values() if g.size), default=0.0)


def _statistics(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def _verdicts(flax: tuple, torch_: tuple, float64: tuple, train: bool, stepped: list[tuple] = ()) -> dict:
    """Each run is (outputs, gradients, BatchNorm statistics); `stepped`: float64 runs at stepped inputs."""
    suffix = " (train)" if train else ""
    out = referee.combine(referee.judge(o, t, r, FORWARD_TOLERANCE, 1.0, [s[0][i] for s in stepped])
                          for i, (o, t, r) in enumerate(zip(flax[0], torch_[0], float64[0])))
    verdicts = {f"forward{suffix}": out, f"gradients{suffix}": _judge_mapping(
        flax[1], torch_[1], float64[1], GRADIENT_TOLERANCE, 1e-2, [s[1] for s in stepped])}
    if train and torch_[2]:  # a mean that is 0 exactly: judged on the scale
        verdicts["batch statistics (train)"] = _judge_mapping(
            flax[2], torch_[2], float64[2], FORWARD_TOLERANCE, 1e-2, [s[2] for s in stepped])
    return verdicts


def _mode(module, model, variables, x, targets, train: bool, seed: int) -> dict[str, referee.Verdict]:
    outputs, _, grads, new = _flax_run(model, variables, Layout.channels_last(x.ndim).to_flax(x), targets, train,
                                       seed)
    masks = _torch_masks(module, model, new.get("intermediates"), x) if train else {}
    t_out, _, t_grads, t_state = _torch_run(module, x, targets, masks, train)
    float64_module, targets64 = referee.float64_copy(module), [t.astype(np.float64) for t in targets]
    r_out, _, r_grads, r_state = _torch_run(float64_module, x.astype(np.float64), targets64, masks, train)
    ours = {k: v.astype(np.float64) for k, v in numpy_state_dict(model, {**variables, "params": grads}).items()
            if k in t_grads}
    stats = {}
    if train and "batch_stats" in variables:
        stats = {k: v.astype(np.float64) for k, v in _statistics(numpy_state_dict(  # unused: torch's, unchanged
            model, {**variables, "batch_stats": new["batch_stats"]}, dropped=module.state_dict())).items()}
    runs = (outputs, ours, stats), (t_out, t_grads, _statistics(t_state) if stats else {}), \
        (r_out, r_grads, _statistics(r_state) if stats else {})
    verdicts = _verdicts(*runs, train)
    if all(v.ok for v in verdicts.values()):
        return verdicts
    stepped = []
    for module_stepped, x_stepped in referee.stepped(float64_module, x, seed):
        s_out, _, s_grads, s_state = _torch_run(module_stepped, x_stepped, targets64, masks, train)
        stepped.append((s_out, s_grads, _statistics(s_state) if stats else {}))
    verdicts = _verdicts(*runs, train, stepped)
    if not any(referee.float32_cannot_judge(v) for v in verdicts.values()):
        return verdicts
    distances = _float64_port(module, model, variables, x, targets64, train, seed, float64_module, bool(stats))
    return {name: referee.proven_in_float64(v, d) for (name, v), d in zip(verdicts.items(), distances)}


def _float64_port(module, model, variables, x, targets64, train: bool, seed: int, float64_module,
                  statistics: bool) -> list[float]:
    """The port run in float64 against the float64 referee (given the port's float64 dropout masks): the
    distances of the outputs, the gradients and (where `statistics`) the BatchNorm statistics, measured as the
    float32 checks measure them."""
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                            variables)
        outputs, _, grads, new = _flax_run(model, wide, Layout.channels_last(x.ndim).to_flax(x.astype(np.float64)),
                                           targets64, train, seed)
        grads, new = jax.tree.map(np.asarray, grads), jax.tree.map(np.asarray, new)
    masks = _torch_masks(module, model, new.get("intermediates"), x) if train else {}
    r_out, _, r_grads, r_state = _torch_run(float64_module, x.astype(np.float64), targets64, masks, train)
    ours = {k: v for k, v in numpy_state_dict(model, {**variables, "params": grads}).items() if k in r_grads}
    distances = [max(referee.relative_difference(o, r, 1.0) for o, r in zip(outputs, r_out)),
                 _distance(ours, r_grads)]
    if statistics:
        stats = _statistics(numpy_state_dict(model, {**variables, "batch_stats": new["batch_stats"]},
                                             dropped=module.state_dict()))
        distances.append(_distance(stats, _statistics(r_state)))
    return distances


def _distance(ours: dict, float64: dict, floor_fraction: float = 1e-2) -> float:
    floor = _floor(float64, floor_fraction)
    return max((referee.relative_difference(ours[k], g, floor) for k, g in float64.items()), default=0.0)


def _other_batch(module: torch.nn.Module, model: nn.Module, variables: dict, x: np.ndarray) -> referee.Verdict:
    """Eval-mode outputs on a batch one larger than the port was traced with: the batch axis stays free."""
    x = np.concatenate([x, x[-1:] * 0.5])
    failed = referee.Verdict(float("inf"), float("inf"), 0.0, FORWARD_TOLERANCE, referee.FAILED)
    with torch.no_grad(), exact_numerics():
        try:
            ours = _outputs(model.apply(variables, Layout.channels_last(x.ndim).to_flax(x)))
        except (TypeError, ValueError):  # a shape of the traced batch written into the source
            return failed
        theirs = [o.double().numpy() for o in _outputs(module.eval()(torch.as_tensor(x)))]
        float64_module = referee.float64_copy(module).eval()
        exact = [o.numpy() for o in _outputs(float64_module(torch.as_tensor(x, dtype=torch.float64)))]
    ours = [Layout.channels_last(o.ndim).to_torch(np.asarray(o, np.float64)) for o in ours]
    if [o.shape for o in ours] != [o.shape for o in theirs]:
        return failed
    verdict = referee.combine(referee.judge(o, t, r, FORWARD_TOLERANCE, floor=1.0)
                              for o, t, r in zip(ours, theirs, exact))
    if verdict.ok:
        return verdict
    with torch.no_grad():
        stepped = [[o.numpy() for o in _outputs(m(torch.from_numpy(xs)))]
                   for m, xs in referee.stepped(float64_module, x)]
    return referee.combine(referee.judge(o, t, r, FORWARD_TOLERANCE, 1.0, [s[i] for s in stepped])
                           for i, (o, t, r) in enumerate(zip(ours, theirs, exact)))


def round_trip_exact(module: torch.nn.Module, model: nn.Module) -> bool:
    """torch state_dict -> Flax -> torch gives every tensor back bit for bit, and loads strictly into the module."""
    state = module.state_dict()
    tensors = torch_state_dict(model, load_state_dict(model, state), dropped=state)
    copy.deepcopy(module).load_state_dict(tensors, strict=True)
    return list(tensors) == list(state) and all(
        torch.equal(tensors[k], state[k].cpu()) and tensors[k].dtype == state[k].dtype for k in state)


def check(module: torch.nn.Module, model: nn.Module | nnx.Module, variables: Any, x_nchw: Any, seed: int = 0
          ) -> Report:
    """The parity report of a port (`model`, `variables`) of `module` on the torch-layout input `x_nchw`; an NNX
    port is checked with its own weights, or with the nnx.State `variables` where given (its own modes and
    dropout streams: what runs is its `__call__`, parity.port._nnx_view).

    Eval mode always, and its outputs on a batch one larger than `x_nchw`'s (the port keeps the batch free); train
    mode too when the model has BatchNorm or Dropout or branches on the mode. The loss of the gradient checks
    is the mean squared error of every output against fixed uniform targets."""
    x = np.asarray(x_nchw, np.float32)
    module = copy.deepcopy(module).cpu().float()
    if isinstance(model, nnx.Module):
        view = view_of(model)
        model, variables = view, view.variables(variables)
    with torch.no_grad():
        shapes = [tuple(o.shape) for o in _outputs(module.eval()(torch.as_tensor(x)))]
    rng = np.random.default_rng(seed)
    targets = [rng.uniform(0, 1, s).astype(np.float32) for s in shapes]
    verdicts = _mode(module, model, variables, x, targets, False, seed)
    verdicts[f"forward (batch of {len(x) + 1})"] = _other_batch(module, model, variables, x)
    if "batch_stats" in variables or type(model).TORCH_DROPOUTS or getattr(type(model), "TORCH_TRAIN_BRANCHES", False):
        if getattr(type(model), "TORCH_TRAIN_BRANCHES", False):  # train-mode outputs may be others (aux logits)
            with torch.no_grad():
                train_shapes = [tuple(o.shape) for o in _outputs(copy.deepcopy(module).train()(torch.as_tensor(x)))]
            if train_shapes != shapes:
                targets = [rng.uniform(0, 1, s).astype(np.float32) for s in train_shapes]
        verdicts |= _mode(module, model, variables, x, targets, True, seed)
    return Report(verdicts, round_trip_exact(module, model))
