"""Start a distributed run: ``torch.distributed.run`` (torchrun) with ``python -m shoal.distributed`` per rank.

One node (the default) uses torchrun's ``--standalone`` rendezvous on a free local port. Several nodes run the
same command on every node with ``nnodes`` and a c10d rendezvous at ``rdzv_endpoint`` (``HOST:PORT`` of one of
them); torchrun assigns the ranks. See docs/distributed.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from shoal.errors import ShoalError

__all__ = ["DistributedRunError", "launch", "torchrun_command"]

Device = Literal["auto", "cpu", "cuda"]


class DistributedRunError(ShoalError, RuntimeError):
    """A rank failed; its traceback was printed by torchrun above this error. The command line exits 1: the run
    itself failed, its usage was fine."""

    exit_code = 1


def torchrun_command(worker_args: list[str], nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
                     rdzv_id: str = "shoal") -> list[str]:
    """The ``python -m torch.distributed.run ...`` command line that starts ``nproc`` workers on this node."""
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, not {nproc}")
    if nnodes < 1:
        raise ValueError(f"--nnodes must be >= 1, not {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT: a port on one of the nodes that every "
                         "node can reach, given to the same command on every node")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}"]
    if rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
    else:
        cmd += ["--standalone"]
    return [*cmd, "-m", "shoal.distributed", *worker_args]


def launch(config: Path | None, home: Path, *, nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
           device: Device = "auto", resume: str | None = None, progress: bool = False) -> str | None:
    """Train ``config`` (or resume run ``resume``) on ``nproc`` processes per node; wait for the end.

    Returns the run id when rank 0 ran on this node (else None: another node holds the registry entry).
    Raises :class:`DistributedRunError` when a rank fails.
    """
    if (config is None) == (resume is None):
        raise ValueError("give a CONFIG file to train, or --resume RUN to continue a run (not both)")
    with tempfile.TemporaryDirectory(prefix="shoal-launch-") as tmp:
        result = Path(tmp) / "result.json"
        args = ["--home", str(Path(home).resolve()), "--device", device, "--result-file", str(result)]
        args += ["--progress"] if progress else []
        args += ["--resume", str(resume)] if resume is not None else [str(Path(str(config)).resolve())]
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        rc = subprocess.run(torchrun_command(args, nproc, nnodes, rdzv_endpoint), env=env, check=False).returncode
        if rc != 0:
            raise DistributedRunError(f"the distributed run failed (torchrun exit code {rc}); the failing rank's "
                                      "traceback is printed above")
        if not result.is_file():
            return None
        return str(json.loads(result.read_text(encoding="utf-8"))["run_id"])
