"""Compiled decoding: `generate` with a static KV cache and a `torch.compile`d forward, for dense and pruned models.

Eager decoding launches one kernel per operation per layer and token; at small batch the GPU then waits on the CPU,
and a pruned model, which launches as many kernels as the dense one, decodes no faster. A static cache gives every
decoding step the same shapes, so the compiled step can be captured once (CUDA graphs under `reduce-overhead`) and
replayed, and the pruned model's smaller weight reads show.

Pruned layers need nothing special here: transformers' static cache sizes each layer's key/value tensors from the
first keys that layer writes, so per-layer KV-head counts come out right. Only a cache initialised before the first
forward reads the counts from the config; the pruned classes in `pruned_modeling` answer that with per-layer counts.
"""

from __future__ import annotations

from torch import nn
from transformers import CompileConfig


def compile_config(mode: str | None = "reduce-overhead", backend: str = "inductor") -> CompileConfig:
    """How `generate` compiles the decoding step; honoured on every device, not only on CUDA-like ones. `mode` is
    inductor's (`reduce-overhead`: CUDA graphs on a GPU); other backends take none.

    Shapes stay static (`dynamic=False`): a static cache makes every decoding step alike, and torch compiles one
    Python forward for every model in the process, so a second model with other head counts (a dense and a pruned
    model side by side) would otherwise turn the cache's head dimension symbolic, which its in-place update with
    the layer's concrete keys then refuses."""
    config = CompileConfig(mode=mode if backend == "inductor" else None, backend=backend, dynamic=False)
    config._compile_all_devices = True  # transformers' own switch for compiling off CUDA
    return config


def use_compiled_decoding(model: nn.Module, mode: str = "reduce-overhead", backend: str = "inductor") -> nn.Module:
    """Make `model.generate` decode with a static cache and a compiled forward (compiled on the first call), on any
    device. Returns the model, changed in place."""
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = compile_config(mode, backend)
    return model
