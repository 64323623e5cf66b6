"""Multi-process JAX: joining a cluster of processes, and host copies of global arrays.

A heavy command runs on several hosts by starting one process per host, all with the same
coordinator and number of processes and each with its own index, and calling `join_cluster` before
any other JAX call:

    join_cluster("10.0.0.1:8476", num_processes=2, process_id=0)   # on host 0 (1 on host 1)
    ...                                   # jax.devices() now lists the devices of every process
    weights = to_host(state.params)       # numpy, the same on every process

With no coordinator and one process it does nothing (a plain single-process run). On the command
line the values come from `--coordinator --num-processes --process-id` or the environment variables
`XVJAX_COORDINATOR`, `XVJAX_NUM_PROCESSES`, `XVJAX_PROCESS_ID` (see `xvjax train --help`).
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")


def join_cluster(
    coordinator: str = "",
    num_processes: int = 1,
    process_id: int = 0,
    cpu_collectives: str = "gloo",
) -> None:
    """Joins `num_processes` processes through `jax.distributed` (coordinator `HOST:PORT`).

    `cpu_collectives` is the CPU backend's cross-process collectives implementation (gloo or mpi).
    """
    if int(num_processes) <= 1 and not coordinator:
        return
    if not coordinator:
        raise XvjaxError(f"{num_processes} processes need a coordinator (--coordinator=HOST:PORT)")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=int(num_processes),
        process_id=int(process_id),
    )
    log.info("Process %d of %d joined %s", jax.process_index(), jax.process_count(), coordinator)


def to_host(tree: Any) -> Any:
    """Numpy copy of a (replicated) pytree of global arrays; works on every process."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)
