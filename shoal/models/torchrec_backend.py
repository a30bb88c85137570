"""SparseArch on TorchRec: the same lookups, from an EmbeddingBagCollection sharded by DistributedModelParallel.

``train.embeddings.backend: torchrec`` swaps each :class:`~shoal.models.embeddings.SparseArch` of a model for a
:class:`TorchRecSparseArch` before training (:mod:`shoal.distributed`). The tables are then sharded over the
ranks (``table_wise``: each table lives on one rank; ``row_wise``: each table's rows are split over all ranks),
looked up through KeyedJaggedTensor all-to-alls, and updated inside the backward by FBGEMM's fused exact
row-wise Adagrad, the same rule as :class:`~shoal.training.optimizers.RowWiseAdagrad`::

    ids[k] (N_k,), offsets[k] (B,)             feature k of the local batch, as SparseArch takes them
      -> KeyedJaggedTensor(keys f0..fF-1)       values = cat(ids), lengths = per row, feature-major
      -> sharded EmbeddingBagCollection         input all-to-all, pooled lookup (mean), output all-to-all
      -> (B, F, dim)

The state dict is SparseArch's (``bag.weight``: all tables concatenated, ``(sum buckets, dim)``): saving gathers
the shards into it on every rank (a collective: every rank must call ``state_dict()`` together), loading takes
each rank's shards from it. So checkpoints, best weights and bundles are ordinary shoal files, and a bundle
trained this way loads, exports and serves with the native SparseArch.

TorchRec is optional (the ``scale`` extra); :func:`unavailable` says why it cannot be imported.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from shoal.models.embeddings import SparseArch

__all__ = ["SHARDINGS", "TorchRecSparseArch", "replace_sparse_arches", "unavailable"]

SHARDINGS = ("table_wise", "row_wise")
INSTALL = "pip install -e '.[scale]' && pip install --no-deps torchrec==1.8.0 (or: make install-scale)"


def unavailable() -> str | None:
    """None when TorchRec and FBGEMM import; else the reason, with the install command."""
    try:
        importlib.import_module("torchrec")
        importlib.import_module("fbgemm_gpu")
    except Exception as err:  # ImportError, or an FBGEMM build that does not load with this torch
        return f"TorchRec is not usable ({type(err).__name__}: {err}); install the scale extra: {INSTALL}"
    return None


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def _sharder(fused_params: dict[str, Any], device: torch.device) -> Any:
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.types import ShardingType

    class Sharder(EmbeddingBagCollectionSharder):
        """TorchRec 1.8 offers row-wise sharding on CUDA only; its CPU kernels (block bucketize, pooled
        reduce-scatter) work over gloo as long as every rank's batch has the same size, which
        :mod:`shoal.distributed` guarantees (full batches in training, the same batches in evaluation)."""

        def sharding_types(self, compute_device_type: str) -> list[str]:
            types = list(super().sharding_types(compute_device_type))
            if ShardingType.ROW_WISE.value not in types:
                types.append(ShardingType.ROW_WISE.value)
            return types

    return Sharder(fused_params=fused_params) if device.type == "cpu" else EmbeddingBagCollectionSharder(
        fused_params=fused_params)


class TorchRecSparseArch(nn.Module):
    """A :class:`SparseArch`'s tables in a sharded TorchRec EmbeddingBagCollection (weights copied from it).

    ``lr``, ``eps`` and ``weight_decay`` are the fused row-wise Adagrad's (``train.embedding_lr``, ...). The
    pooled embeddings' gradient is divided by the world size (TorchRec's output all-to-all does it, unless
    ``set_gradient_division(False)``, then this module does), so the rows get the gradient of the mean loss over
    the global batch, as the native backend's averaged sparse all-reduce gives them.
    """

    dmp: Any  # the DistributedModelParallel-wrapped EmbeddingBagCollection (not a submodule)

    def __init__(self, native: SparseArch, sharding: str, optimizer: dict[str, float], device: torch.device,
                 group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        if sharding not in SHARDINGS:
            raise ValueError(f"sharding must be one of {', '.join(SHARDINGS)}, not {sharding!r}")
        from fbgemm_gpu.split_embedding_configs import EmbOptimType
        from fbgemm_gpu.tbe.config.optimizer_config import WeightDecayMode
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType
        from torchrec.distributed.model_parallel import DistributedModelParallel
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology

        self.dim = native.dim
        self.num_features = native.num_features
        starts = native.table_offsets.tolist()
        self.starts = starts
        self.group = group
        self.device = device
        self.world = dist.get_world_size(group)
        self.keys = [f"f{k}" for k in range(self.num_features)]
        from torchrec.distributed.comm_ops import get_gradient_division

        self._divides = get_gradient_division()  # TorchRec's output all-to-all already divides the gradient by W
        tables = [EmbeddingBagConfig(name=f"t{k}", embedding_dim=self.dim, num_embeddings=starts[k + 1] - starts[k],
                                     feature_names=[self.keys[k]], pooling=PoolingType.MEAN)
                  for k in range(self.num_features)]
        fused = {"optimizer": EmbOptimType.EXACT_ROWWISE_ADAGRAD, "learning_rate": optimizer["lr"],
                 "eps": optimizer.get("eps", 1e-8), "weight_decay": optimizer.get("weight_decay", 0.0),
                 "weight_decay_mode": WeightDecayMode.L2}
        sharder = _sharder(fused, device)
        constraints = {t.name: ParameterConstraints(sharding_types=[sharding]) for t in tables}
        planner = EmbeddingShardingPlanner(topology=Topology(world_size=self.world, compute_device=device.type),
                                           constraints=constraints)
        ebc = EmbeddingBagCollection(tables=tables, device=torch.device("meta"))
        plan = planner.collective_plan(ebc, [sharder], group or dist.GroupMember.WORLD)
        dmp = DistributedModelParallel(ebc, device=device, plan=plan, sharders=[sharder], init_data_parallel=False,
                                       env=None if group is None else _sharding_env(group))
        # Not a submodule: the parameters are updated by the fused optimizer (never by the trainer's Adam), and
        # the state dict is SparseArch's layout (see _save_to_state_dict), not TorchRec's sharded one.
        object.__setattr__(self, "dmp", dmp)
        self.plan = plan
        self.load_native(native.bag.weight.detach())

    # -- the lookups -----------------------------------------------------------------------------------------
    def forward(self, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        from torchrec import KeyedJaggedTensor

        batch = offsets[0].shape[0]
        lengths = [torch.diff(o, append=o.new_tensor([i.shape[0]])) for i, o in zip(ids, offsets, strict=True)]
        kjt = KeyedJaggedTensor(keys=self.keys, values=torch.cat(ids), lengths=torch.cat(lengths))  # (sum N_k,)
        pooled = self.dmp(kjt).values()  # (B, F * dim), feature-major within a row
        if torch.is_grad_enabled() and self.world > 1 and not self._divides:
            pooled = _ScaleGrad.apply(pooled, 1.0 / self.world)
        return pooled.view(batch, self.num_features, self.dim)  # (B, F, dim)

    # -- weights in SparseArch's layout ---------------------------------------------------------------------
    def _weights(self) -> list[Any]:
        """Per table, its weight as a ShardedTensor (this rank's shards, with their offsets in the table)."""
        state = self.dmp.state_dict()
        return [state[f"embedding_bags.t{k}.weight"] for k in range(self.num_features)]

    def _accumulators(self) -> list[Any]:
        """Per table, the fused row-wise Adagrad's accumulators (momentum1) as a 1-d ShardedTensor; None for a
        table with no shard on this rank (table-wise sharding)."""
        state = self.dmp.fused_optimizer.state_dict()["state"]
        return [state[f"embedding_bags.t{k}.weight"][f"t{k}.momentum1"] if f"embedding_bags.t{k}.weight" in state
                else None for k in range(self.num_features)]

    def _gather(self, tables: list[Any], shape: tuple[int, ...]) -> torch.Tensor:
        """The tables' shards placed in one tensor of SparseArch's layout (tables stacked by rows), all-reduced."""
        full: torch.Tensor | None = None
        for k, table in enumerate(tables):
            for s in [] if table is None else table.local_shards():
                if full is None:
                    full = torch.zeros(shape, dtype=torch.float32, device=s.tensor.device)
                index = tuple(slice(o + (self.starts[k] if d == 0 else 0), o + (self.starts[k] if d == 0 else 0) + n)
                              for d, (o, n) in enumerate(zip(s.metadata.shard_offsets, s.tensor.shape, strict=True)))
                full[index] = s.tensor.detach().float()
        if full is None:  # this rank holds no shard
            full = torch.zeros(shape, dtype=torch.float32, device=self.device)
        dist.all_reduce(full, group=self.group)  # every value lives on exactly one rank: the sum is a gather
        return full

    @torch.no_grad()
    def native_weight(self) -> torch.Tensor:
        """The tables as SparseArch's ``bag.weight`` (sum buckets, dim), on every rank (a collective)."""
        return self._gather(self._weights(), (self.starts[-1], self.dim))

    @torch.no_grad()
    def load_native(self, weight: torch.Tensor) -> None:
        """Copy each local shard from a full ``(sum buckets, dim)`` weight (no communication)."""
        if tuple(weight.shape) != (self.starts[-1], self.dim):
            raise ValueError(f"bag.weight has shape {tuple(weight.shape)}; this model's tables need "
                             f"{(self.starts[-1], self.dim)}")
        for k, table in enumerate(self._weights()):
            for s in table.local_shards():
                r0, c0 = (int(o) for o in s.metadata.shard_offsets)
                rows, cols = s.tensor.shape
                s.tensor.copy_(weight[self.starts[k] + r0:self.starts[k] + r0 + rows, c0:c0 + cols])

    @torch.no_grad()
    def optimizer_state(self) -> torch.Tensor:
        """The fused Adagrad's row accumulators, (sum buckets,), as RowWiseAdagrad's ``sum`` (a collective)."""
        return self._gather(self._accumulators(), (self.starts[-1],))

    @torch.no_grad()
    def load_optimizer_state(self, acc: torch.Tensor) -> None:
        """Copy each local shard of the accumulators from a full ``(sum buckets,)`` tensor."""
        for k, table in enumerate(self._accumulators()):
            for s in [] if table is None else table.local_shards():
                r0 = int(s.metadata.shard_offsets[0])
                s.tensor.copy_(acc[self.starts[k] + r0:self.starts[k] + r0 + s.tensor.shape[0]])

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        destination[prefix + "bag.weight"] = self.native_weight()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        key = prefix + "bag.weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        try:
            self.load_native(state_dict[key])
        except ValueError as err:
            error_msgs.append(str(err))


def _sharding_env(group: dist.ProcessGroup) -> Any:
    from torchrec.distributed.types import ShardingEnv

    return ShardingEnv.from_process_group(group)


def replace_sparse_arches(model: nn.Module, sharding: str, optimizer: dict[str, float], device: torch.device,
                          group: dist.ProcessGroup | None = None) -> list[TorchRecSparseArch]:
    """Swap every SparseArch of ``model`` (in place) for a sharded copy of it; returns the new modules."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, SparseArch) and m.num_features]
    swapped = []
    for name, arch in found:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = TorchRecSparseArch(arch, sharding, optimizer, device, group)
        setattr(parent, attr, new)
        swapped.append(new)
    return swapped
