"""The report of parity.port.check: per check its verdict, and the weight round trip."""

import dataclasses

from parity.checks import referee


@dataclasses.dataclass(frozen=True)
class Report:
    """Per check, the verdict (flax-torch, flax-float64, torch-float64 distances and the criterion that held)."""
    verdicts: dict[str, referee.Verdict]
    round_trip_exact: bool

    @property
    def ok(self) -> bool:
        return self.round_trip_exact and all(v.ok for v in self.verdicts.values())

    def table(self) -> str:
        """A markdown table; `f64 spread`: the float64 referee's own change under a step of the input, and
        `f64 port`: the port run in float64 against the referee, each measured only where the criteria before
        it failed (see parity.checks.referee)."""
        lines = [f"| {'check':<24} | {'flax-torch':>10} | {'flax-f64':>9} | {'torch-f64':>9} | {'f64 spread':>10} "
                 f"| {'f64 port':>8} | {'gate':>6} | criterion       |",
                 "|" + "|".join("-" * w for w in (26, 12, 11, 11, 12, 10, 8, 17)) + "|"]
        for name, v in self.verdicts.items():
            spread = f"{v.float64_spread:>10.1e}" if v.float64_spread else f"{'':>10}"
            port = f"{v.float64_port:>8.1e}" if v.float64_port else f"{'':>8}"
            lines.append(f"| {name:<24} | {v.flax_torch:>10.1e} | {v.flax_float64:>9.1e} | {v.torch_float64:>9.1e} "
                         f"| {spread} | {port} | {v.tolerance:>6.0e} | {v.criterion:<15} |")
        lines.append(f"| {'round trip':<24} | {'bit-exact' if self.round_trip_exact else 'DIFFERS':>10} | "
                     f"{'':>9} | {'':>9} | {'':>10} | {'':>8} | {'':>6} | {'strict load':<15} |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"ok": self.ok, "round_trip_exact": self.round_trip_exact,
                "checks": {k: dataclasses.asdict(v) | {"ok": v.ok} for k, v in self.verdicts.items()}}
