"""What the recorder patches while a module runs: nn.Module.__call__ (each module call seen), and the library
functions recorded by name as one node each (torchvision's stochastic_depth, timm's drop_path), wherever loaded."""

import contextlib
import inspect
import sys
from typing import Any, Callable

import torch

_FOUND: dict = {}  # (names, number of loaded modules) -> where the named functions are


def _named_functions(names: frozenset[str]) -> list[tuple[dict, str, Callable]]:
    """(module namespace, name, function) of every loaded module's function named one of `names`; the scan of
    sys.modules is kept until a module is loaded, each entry checked to be still there."""
    key = (names, len(sys.modules))
    if key not in _FOUND:
        found = []
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if isinstance(namespace, dict):
                found += [(namespace, name, namespace[name]) for name in names
                          if inspect.isfunction(namespace.get(name)) and namespace[name].__name__ == name]
        _FOUND.clear()
        _FOUND[key] = found
    return [(namespace, name, f) for namespace, name, f in _FOUND[key] if namespace.get(name) is f]


@contextlib.contextmanager
def patched(names: frozenset[str], call_named: Callable, call_module: Callable, mode: Any):
    """Within: module calls go to `call_module(original_call, module, args, kwargs)`, the functions named `names`
    to `call_named(function, args, kwargs)`, and `mode` (a TorchFunctionMode) is on; all restored after."""
    original_call = torch.nn.Module.__call__

    def call(module, *args, **kwargs):
        return call_module(original_call, module, args, kwargs)

    replaced = []
    for namespace, name, function in _named_functions(names):
        def wrapper(*args, _function=function, **kwargs):
            return call_named(_function, args, kwargs)
        replaced.append((namespace, name, function))
        namespace[name] = wrapper
    torch.nn.Module.__call__ = call
    try:
        with mode:
            yield
    finally:
        torch.nn.Module.__call__ = original_call
        for namespace, name, function in replaced:
            namespace[name] = function
