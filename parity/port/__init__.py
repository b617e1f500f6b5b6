"""Port your own torch CNN: `port(module, example_input) -> (flax_module, variables)`.

The module is traced by running it on the example input (parity.port._record), each operation becomes a line of
a readable linen module (jaxcnn's layers, torch semantics, channels-last), its weights are converted, and `check`
proves the two compute the same function. `python -m parity port file.py:Class --input-shape N,C,H,W --out DIR` writes DIR/model.py,
DIR/variables.safetensors and DIR/report.json; `load(DIR)` reads them back.
"""

from parity.port._check import Report, check
from parity.port._port import Ported, build, port
from parity.port._saved import load, save
from parity.port._trace import PortError
from parity.port._weights import load_state_dict, torch_state_dict
from parity.port._emit import supported

__all__ = ["PortError", "Ported", "Report", "build", "check", "load", "load_state_dict", "port",
           "save", "supported", "torch_state_dict"]
