"""The Torch-Pruning library as an external peer: its own choice of units at the same decoder sparsity.

The work (configuration, the child process with a timeout, reading back what it kept) is in `hipp_core.peers`;
this module registers it as a planning method. It needs no calibration: Torch-Pruning ranks units by its own
L2-magnitude criterion, which the blueprint records as `torch-pruning-magnitude`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hipp_core.blueprint import Blueprint
from hipp_core.errors import HippError
from hipp_core.methods.base import MethodConfig, ModelContext, option, register
from hipp_core.peers import torch_pruning_blueprint


@dataclass(frozen=True)
class TorchPruningConfig(MethodConfig):
    heads: bool | None = option(
        None, "prune attention heads too: none = only on MHA decoders (its graph search does not end under GQA)"
    )
    timeout_s: float = option(60.0, "seconds before the Torch-Pruning child process is killed")

    def check(self) -> None:
        if self.heads is not None and not isinstance(self.heads, bool):
            raise HippError(f"heads must be true, false or none, got {self.heads!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, int | float) or not self.timeout_s > 0:
            raise HippError(f"timeout_s must be a positive number of seconds, got {self.timeout_s!r}")


@register("torch-pruning", "peer", TorchPruningConfig, "the Torch-Pruning library's own choice (external peer)")
def plan(context: ModelContext, config: TorchPruningConfig, sparsity: float) -> Blueprint:
    loaded = context.loaded
    return torch_pruning_blueprint(
        loaded.adapter,
        loaded.model_id,
        loaded.family,
        sparsity,
        context.m,
        heads=config.heads,
        timeout_s=config.timeout_s,
    )
