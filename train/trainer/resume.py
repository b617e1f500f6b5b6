"""--resume: the newest intact checkpoint (checksum verified; damaged ones are named and passed over), with the
settings it was trained with checked against this run's."""

import sys
from typing import Any

from train.trainer.checkpoint import Checkpoints
from train.trainer.fit import TrainingError

# Settings whose change would make the resumed run another run than the one checkpointed.
MUST_MATCH = ("model", "dataset", "optimizer", "lr", "weight_decay", "batch_size", "preprocess", "seed", "init",
              "train_subset", "test_subset", "schedule", "warmup_fraction", "label_smoothing", "augment", "weights",
              "freeze", "lr_head", "dtype")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_settings(saved: dict, config: Any) -> None:
    """Raises TrainingError naming each changed setting and both values (unless config.allow_changes, which
    warns instead). epochs may grow, except on a one-cycle schedule, whose span it is."""
    saved_api = saved.get("api", "linen")  # checkpoints from before --api hold linen states
    if saved_api != getattr(config, "api", "linen"):
        raise TrainingError(f"cannot resume: the checkpoint holds a {saved_api} network's state and --api "
                            f"{config.api} trains the other kind; give --api {saved_api} (--allow-changes cannot "
                            "change it)")
    keys = MUST_MATCH + (("epochs",) if config.schedule == "onecycle" else ())
    as_json = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (a tuple flag is a list in JSON)
    changed = {k: (saved[k], getattr(config, k)) for k in keys
               if k in saved and as_json(saved[k]) != as_json(getattr(config, k))}
    if not changed:
        return
    listing = ", ".join(f"{_flag(k)} {was!r} (saved) -> {now!r} (now)" for k, (was, now) in changed.items())
    if not config.allow_changes:
        raise TrainingError(f"cannot resume: the checkpoint was trained with other settings: {listing}; give the "
                            "saved values, or --allow-changes to continue with the new ones")
    print(f"warning: resuming with changed settings: {listing}", file=sys.stderr)


def resume(checkpoints: Checkpoints, config: Any, state: Any) -> tuple[Any, list[dict]]:
    """(state, epoch history) of the newest checkpoint that restores and matches its checksum; the given state
    and no history when there is none. A damaged checkpoint is named in a warning and the one before it is used;
    when none is intact the run stops (TrainingError) naming each."""
    damaged = []
    for epoch in reversed(checkpoints.epochs()):
        where = checkpoints.directory / str(epoch)
        try:
            check_settings(checkpoints.meta(epoch).get("config", {}), config)
            restored, meta = checkpoints.restore(epoch, state)
        except TrainingError:
            raise
        except Exception as err:  # orbax raises FileNotFoundError, ValueError, ... for damaged files
            damaged.append((epoch, f"{where} ({type(err).__name__}: "
                                   f"{str(err).splitlines()[0] if str(err) else ''})"[:300]))
            continue
        if damaged:
            kept = [str(checkpoints.set_aside(e)) for e, _ in damaged]
            print(f"warning: passed over damaged checkpoints: {'; '.join(why for _, why in damaged)}; kept as "
                  f"{', '.join(kept)}", file=sys.stderr)
        print(f"resumed from {where}")
        return restored, meta["epochs"]
    if damaged:
        raise TrainingError(f"cannot resume: no checkpoint under {checkpoints.directory} is intact: "
                            f"{'; '.join(why for _, why in damaged)}; start afresh with --overwrite")
    return state, []
