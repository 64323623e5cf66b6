"""Multi-process JAX: joining a cluster of processes, agreeing on success, host copies of arrays.

A heavy command (train, make-features, nnet3-xvector-compute, the scorers) runs on several hosts
by starting one process per host and calling `join_cluster` before any other JAX call:

    join_cluster("10.0.0.1:8476", num_processes=2, process_id=0)   # on host 0 (1 on host 1)
    join_cluster("auto")         # JAX finds the cluster: Slurm, Cloud TPU, GKE, Open MPI
    join_cluster()               # a multi-task Slurm step or Open MPI job is joined; else nothing
    ...                          # jax.devices() now lists the devices of every process
    weights = to_host(state.params)       # numpy, the same on every process

With no coordinator and no cluster in the environment it does nothing (a plain single-process
run); `"none"` never joins. On the command line the values come from `--coordinator
--num-processes --process-id` or the environment variables `XVJAX_COORDINATOR`,
`XVJAX_NUM_PROCESSES`, `XVJAX_PROCESS_ID` (`xvjax.cli.CLUSTER_OPTS`).

Once joined, the processes of a job finish together: `all_succeed(part)` runs this process's part
and raises, on every process, an error naming the process that failed and its error (each then
undoes its outputs); `allgather_rows` and `barrier` exchange small arrays and wait for everyone.
A process that dies without reaching them (killed, a crash) is noticed by JAX's coordination
service, which stops the others after its heartbeat timeout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils

from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

T = TypeVar("T")
_MESSAGE_BYTES = 1024  # longest error text one process sends the others


def detected_cluster() -> str | None:
    """The multi-process launch the environment shows (and JAX detects without a network query),
    e.g. "Slurm step with 4 tasks", or None. Cloud TPU slices need `--coordinator=auto`."""
    env = os.environ
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(v in env for v in slurm) and _int(env["SLURM_NTASKS"]) > 1:
        return f"Slurm step with {env['SLURM_NTASKS']} tasks"
    if "OMPI_MCA_orte_hnp_uri" in env and _int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return f"Open MPI job with {env['OMPI_COMM_WORLD_SIZE']} processes"
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    if len([h for h in hosts.split(",") if h.strip()]) > 1:
        return f"TPU slice of {len(hosts.split(','))} hosts"
    return None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def join_cluster(
    coordinator: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    cpu_collectives: str = "gloo",
) -> tuple[int, int]:
    """Joins the processes of a job through `jax.distributed`; returns (process index, count).

    coordinator: `HOST:PORT` (with `num_processes` and this `process_id`); "auto": JAX detects the
    cluster (Slurm, Cloud TPU, GKE, Open MPI); "": join a cluster the environment shows
    (`detected_cluster`), else run alone; "none": run alone. `num_processes` 0 and `process_id` -1
    mean "from the cluster". `cpu_collectives` is the CPU backend's cross-process collectives
    implementation (gloo or mpi). Joining twice with the same values is a no-op.
    """
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    num_processes, process_id = int(num_processes), int(process_id)
    found = detected_cluster() if coordinator == "" else None
    if coordinator == "none" or (coordinator == "" and found is None):
        if num_processes > 1:
            raise XvjaxError(
                f"{num_processes} processes need a coordinator (--coordinator=HOST:PORT, or "
                "--coordinator=auto inside a Slurm step or on a TPU slice)"
            )
        return 0, 1
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    explicit = coordinator not in ("", "auto")
    if explicit and (num_processes < 1 or process_id < 0 or process_id >= num_processes):
        raise XvjaxError(
            f"--coordinator={coordinator} needs --num-processes=N and --process-id=0..N-1 "
            f"(got {num_processes} and {process_id})"
        )
    try:
        given = explicit or num_processes > 1  # else the cluster tells (a config's 1/0 too)
        jax.distributed.initialize(
            coordinator_address=coordinator if explicit else None,
            num_processes=num_processes if given else None,
            process_id=process_id if given and process_id >= 0 else None,
        )
    except (ValueError, RuntimeError) as e:
        where = found or ("the environment" if not explicit else coordinator)
        raise XvjaxError(f"cannot join the cluster ({where}): {e}") from None
    log.info(
        "Process %d of %d joined %s (%d local devices, %d in all)",
        jax.process_index(), jax.process_count(), coordinator if explicit else (found or "auto"),
        jax.local_device_count(), jax.device_count(),
    )  # fmt: skip
    return jax.process_index(), jax.process_count()


def to_host(tree: Any) -> Any:
    """Numpy copy of a (replicated) pytree of global arrays; works on every process."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


# ----------------------------------------------------------------------------- finishing together
def allgather_rows(x: np.ndarray) -> np.ndarray:
    """(num_processes, *x.shape): every process's `x` (same shape and dtype on all), on every
    process. One process: `x[None]`."""
    x = np.asarray(x)
    if jax.process_count() == 1:
        return x[None]
    return np.asarray(multihost_utils.process_allgather(x, tiled=False))


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name`."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def exchange_messages(message: str) -> list[str]:
    """Every process's `message` (UTF-8, cut to 1 KiB), in process order."""
    raw = message.encode("utf-8")[:_MESSAGE_BYTES]
    buf = np.zeros(_MESSAGE_BYTES + 4, np.uint8)
    buf[:4] = np.frombuffer(np.uint32(len(raw)).tobytes(), np.uint8)
    buf[4 : 4 + len(raw)] = np.frombuffer(raw, np.uint8)
    rows = allgather_rows(buf)
    out = []
    for row in rows:
        n = int(np.frombuffer(row[:4].tobytes(), np.uint32)[0])
        out.append(row[4 : 4 + n].tobytes().decode("utf-8", errors="replace"))
    return out


def check_all(error: str | None) -> None:
    """Every process says whether its part failed (`error`, one line, or None); if any did, raises
    XvjaxError on every process, naming the first process that failed and its error."""
    if jax.process_count() == 1:
        if error is not None:
            raise XvjaxError(error)
        return
    messages = exchange_messages(error or "")
    failed = [(i, m) for i, m in enumerate(messages) if m]
    if not failed:
        return
    i, message = failed[0]
    others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    me = jax.process_index()
    who = "this process" if i == me else "process"
    raise XvjaxError(
        f"{who} {i + 1} of {len(messages)} failed{others}: {message}; no output was kept"
    )


def all_succeed(part: Callable[[], T]) -> T:
    """Runs this process's `part` of a job, then `check_all`: its error is handed to every process
    (which all raise), instead of ending this one alone while the others wait for it. An error
    that is not an XvjaxError or OS error (a bug) is logged with its traceback first."""
    error = None
    result = None
    try:
        result = part()
    except XvjaxError as e:
        error = str(e)
    except OSError as e:
        error = f"{e.strerror or e}" + (f": '{e.filename}'" if e.filename is not None else "")
    except Exception as e:
        if jax.process_count() == 1:
            raise
        log.exception("internal error")
        error = f"internal error {type(e).__name__}: {e}"
    check_all(error)
    return result
