"""Orbax checkpoints of a training run: TrainState + data position + run metadata, per step.

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=3)
    ckpt.save(step, state, data_position={"archive": 3, "batch": 17}, meta={...})
    state, position, meta = ckpt.restore(ckpt.latest_step(), like=state)

Layout: `<dir>/<step>/{state,data,meta}` (Orbax `CheckpointManager` with `ocp.args.Composite`);
saves are asynchronous where Orbax supports it (`wait()` blocks until they are on disk); a partially
written step is never picked up by `latest_step()` (Orbax writes into a temp dir and renames); a state
with a non-finite value is never saved.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


def all_finite(tree: Any) -> bool:
    """Whether every floating-point leaf of `tree` (numpy or jax arrays, also global ones spanning
    several processes) is free of nan and inf."""
    flags = [
        jnp.isfinite(x).all()
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.floating)
    ]
    if not flags:
        return True
    ok = jnp.all(jnp.stack(flags))
    return bool(np.asarray(ok.addressable_data(0)))


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep if max_to_keep > 0 else None,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_names=("state", "data", "meta"),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        data_position: dict,
        meta: dict | None = None,
        force: bool = True,
    ) -> bool:
        """Starts saving `state` (a pytree of jax arrays) at `step`; returns whether it saves.
        Raises XvjaxError (saving nothing) if `state` has a non-finite value."""
        if step in self._manager.all_steps():
            return False
        if not all_finite(state):
            raise XvjaxError(f"refusing to save checkpoint step {step}: the state has nan or inf")
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(dict(data_position)),
            meta=ocp.args.JsonSave(dict(meta or {})),
        )
        saved = self._manager.save(step, args=args, force=force)
        if saved:
            log.info("Saving checkpoint at step %d to %s", step, self.directory)
        return saved

    def restore(self, step: int, like: Any) -> tuple[Any, dict, dict]:
        """Restores (state, data_position, meta); `like` gives the tree, shapes, dtypes, shardings."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            out = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract),
                    data=ocp.args.JsonRestore(),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:  # orbax raises many types; one line with the directory
            raise XvjaxError(
                f"cannot restore checkpoint step {step} from {self.directory}: {e}"
            ) from None
        return out["state"], dict(out["data"] or {}), dict(out["meta"] or {})

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
