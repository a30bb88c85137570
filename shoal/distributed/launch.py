"""Start a distributed run: ``torch.distributed.run`` (torchrun) with ``python -m shoal.distributed`` per rank.

One node (the default) uses torchrun's ``--standalone`` rendezvous on a free local port. Several nodes run the
same command on every node with ``nnodes`` and a c10d rendezvous at ``rdzv_endpoint`` (``HOST:PORT`` of one of
them); torchrun assigns the ranks. See docs/distributed.md.

torchrun's stores (the rendezvous store, and the store the ranks meet at) are TCP servers without any
authentication, and torch binds them to every interface whatever address it is given. So the command runs
torchrun through this module (``python -m shoal.distributed.launch``), which makes every store server listen
on the address it was given only: ``localhost`` and ``--local-addr=127.0.0.1`` for one node (nothing reachable
from another machine; gloo and NCCL are kept on the loopback interface too), the rendezvous endpoint's host and
this node's ``local_addr`` for several nodes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from shoal.errors import ShoalError

__all__ = ["LOOPBACK", "DistributedRunError", "bind_stores_to_their_address", "launch", "torchrun_command"]

Device = Literal["auto", "cpu", "cuda"]
LOOPBACK = "127.0.0.1"  # where a one-node run listens: nothing of it is reachable from another machine


class DistributedRunError(ShoalError, RuntimeError):
    """A rank failed; its traceback was printed by torchrun above this error. The command line exits 1: the run
    itself failed, its usage was fine."""

    exit_code = 1


def torchrun_command(worker_args: list[str], nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
                     rdzv_id: str = "shoal", local_addr: str | None = None) -> list[str]:
    """The command line that starts ``nproc`` workers on this node: torchrun's own arguments, run through
    ``python -m shoal.distributed.launch`` (torchrun with its stores bound to the addresses they are given).

    ``local_addr``: the address of this node's interface that the ranks' store listens on (and the other nodes
    reach it by). One node: always ``127.0.0.1``. Several nodes: the interface you name, else torchrun's default
    (the address of this machine's fully qualified host name).
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, not {nproc}")
    if nnodes < 1:
        raise ValueError(f"--nnodes must be >= 1, not {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT: a port on one of the nodes that every "
                         "node can reach, given to the same command on every node")
    cmd = [sys.executable, "-m", "shoal.distributed.launch", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}"]
    if rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
        cmd += [f"--local-addr={local_addr}"] if local_addr else []
    else:
        if local_addr not in (None, LOOPBACK, "localhost"):
            raise ValueError(f"--local-addr {local_addr} is for runs over several nodes; one node listens on "
                             f"{LOOPBACK} only")
        cmd += ["--standalone", f"--local-addr={LOOPBACK}"]
    return [*cmd, "-m", "shoal.distributed", *worker_args]


def bind_stores_to_their_address() -> None:
    """Make every ``torch.distributed.TCPStore`` server created from now on in this process listen on the address
    it was created with, not on every interface (torch's own choice), by handing it a socket bound there.

    Called before torchrun's modules are imported, so its rendezvous picks up the subclass."""
    import torch.distributed as dist

    base: Any = dist.TCPStore
    if getattr(base, "_shoal_bound", False):
        return
    names = ("host_name", "port", "world_size", "is_master", "timeout", "wait_for_workers", "multi_tenant",
             "master_listen_fd", "use_libuv")

    class BoundTCPStore(base):
        _shoal_bound = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.update(zip(names, args, strict=False))
            if kwargs.get("is_master") and kwargs.get("master_listen_fd") is None:
                try:
                    listener = _listen(str(kwargs["host_name"]), int(kwargs.get("port", 0)))
                except OSError as err:  # as torch's own store fails (the rendezvous then joins as a client)
                    raise RuntimeError(f"the store cannot listen on {kwargs['host_name']}:{kwargs.get('port')}: "
                                       f"{err}") from err
                kwargs["port"] = listener.getsockname()[1]
                kwargs["master_listen_fd"] = listener.detach()  # the store owns the socket from now on
            super().__init__(**kwargs)

    dist.TCPStore = BoundTCPStore  # type: ignore[misc]


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``'s address (IPv4 first: ``localhost`` is 127.0.0.1)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = sorted(infos, key=lambda i: i[0] != socket.AF_INET)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(socket.SOMAXCONN)
    return sock


def _loopback_interface() -> str:
    names = [name for _, name in socket.if_nameindex()]
    return "lo" if "lo" in names or not names else next((n for n in names if n.startswith("lo")), "lo")


def _torchrun_main(argv: list[str]) -> None:
    """``python -m shoal.distributed.launch TORCHRUN-ARGS``: torchrun, its stores bound to their addresses; on
    one node (``--local-addr=127.0.0.1``) gloo and NCCL talk over the loopback interface too."""
    if f"--local-addr={LOOPBACK}" in argv and "--standalone" in argv:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
        os.environ.setdefault("NCCL_SOCKET_IFNAME", _loopback_interface())
    bind_stores_to_their_address()
    from torch.distributed.run import main

    main(argv)


def launch(config: Path | None, home: Path, *, nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None,
           device: Device = "auto", resume: str | None = None, progress: bool = False,
           local_addr: str | None = None) -> str | None:
    """Train ``config`` (or resume run ``resume``) on ``nproc`` processes per node; wait for the end.

    One node listens on 127.0.0.1 only; several nodes on the rendezvous endpoint's host and ``local_addr``
    (this node's interface for the ranks' store; see :func:`torchrun_command`).

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
        env["TMPDIR"] = tmp  # torchrun's agent leaves a torchelastic_* folder a run in the temp folder: here, removed
        rc = subprocess.run(torchrun_command(args, nproc, nnodes, rdzv_endpoint,
                                             local_addr=local_addr), env=env, check=False).returncode
        if rc != 0:
            raise DistributedRunError(f"the distributed run failed (torchrun exit code {rc}); the failing rank's "
                                      "traceback is printed above")
        if not result.is_file():
            return None
        return str(json.loads(result.read_text(encoding="utf-8"))["run_id"])


if __name__ == "__main__":
    _torchrun_main(sys.argv[1:])
