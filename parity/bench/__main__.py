"""python -m parity.bench: training and inference throughput, Flax beside torch (parity.bench.throughput)."""

import sys

from parity.bench.throughput import main

sys.exit(main())
