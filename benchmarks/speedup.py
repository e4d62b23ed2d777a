"""Dense vs physically pruned speed the way people run models: prefill, eager decoding and compiled decoding with
Hugging Face `generate`, next to the FLOPs ratio and the weight-read limit. Used by gpu_7b.py.

Decoding time per token is measured by difference: `generate` of 1 + N tokens minus `generate` of 1 token (the
prefill, the cache set-up and the first sample), divided by N, with medians over interleaved repeats of the models
being compared (`statistic="min"` for the CPU dry run, where other processes make single runs slow). Compiled decoding is `generate` with a static cache and `torch.compile`, exactly what
`hipp_core.load_pruned(..., compile=True)` sets up; its first call (compilation) is a warm-up and is not timed.

The weight-read limit is the time one decoding step needs just to read the language model's weights once (decoder
layers, final norm, lm_head) at the measured memory bandwidth: at batch 1 a step cannot be faster, and the ratio of
dense to pruned weight bytes is the best speedup decoding can show.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from hipp_core.models.adapters import ModelAdapter
from hipp_core.models.decoding import compile_config

STATISTICS = {"median": statistics.median, "min": min}


def sync(device: torch.device) -> None:
    """CUDA runs asynchronously: a clock read without waiting for the kernels times their launch, not their work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def bandwidth_gb_s(device: torch.device, nbytes: int, repeats: int = 10) -> float:
    """Measured memory bandwidth: a device-to-device copy reads and writes `nbytes` each (median of `repeats`)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    seconds = statistics.median(timed(lambda: dst.copy_(src), device) for _ in range(repeats))
    return 2 * nbytes / seconds / 1e9


def lm_weight_bytes(adapter: ModelAdapter) -> int:
    """Bytes one decoding step reads: decoder layers, the final norm and lm_head (an embedding lookup reads a row)."""
    parts = [adapter.decoder_layers, adapter.language_model.norm, adapter.model.lm_head]
    return sum(p.numel() * p.element_size() for part in parts for p in part.parameters())


def text_ids(adapter: ModelAdapter, batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    """Random ordinary token ids (below every special and multimodal id), as many as a prompt with an image has:
    the decoder does the same work whether a position held an image token or a word."""
    config = adapter.model.config
    special = [getattr(config, k, None) for k in ("image_token_id", "vision_start_token_id", "video_token_id")]
    high = min(x for x in special if x is not None)
    gen = torch.Generator().manual_seed(seed)
    device = next(adapter.model.parameters()).device
    return torch.randint(10, high, (batch, seq), generator=gen).to(device)


@torch.no_grad()
def prefill_seconds(model: nn.Module, ids: torch.Tensor) -> float:
    """One forward of the language model alone over `ids` (no cache): the part of prefill that pruning changes."""
    return timed(lambda: model.model.language_model(input_ids=ids, use_cache=False), ids.device)


@torch.no_grad()
def _generate(model: nn.Module, ids: torch.Tensor, new_tokens: int, compiled: bool, compile_kwargs: dict) -> None:
    kwargs = {"cache_implementation": "static", "compile_config": compile_config(**compile_kwargs)} if compiled else {}
    model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,  # random weights may sample EOS: every run decodes the same number of tokens
        do_sample=False,
        pad_token_id=0,
        disable_compile=not compiled,
        **kwargs,
    )


def decode_ms_per_token(
    models: dict[str, nn.Module],
    ids: torch.Tensor,
    new_tokens: int,
    repeats: int,
    compiled: bool = False,
    compile_kwargs: dict | None = None,
    statistic: str = "median",
) -> dict[str, float]:
    """Milliseconds per decoded token of each model, by difference of `generate(1 + N)` and `generate(1)`;
    repeats are interleaved across the models so they see the same machine."""
    stat = STATISTICS[statistic]
    compile_kwargs = compile_kwargs or {}
    long: dict[str, list[float]] = {name: [] for name in models}
    short: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up: kernels, allocator and, when compiled, the compilation itself
        _generate(model, ids, 1 + new_tokens, compiled, compile_kwargs)
        _generate(model, ids, 1, compiled, compile_kwargs)
    for _ in range(repeats):
        for name, model in models.items():
            for runs, tokens in ((long, 1 + new_tokens), (short, 1)):
                run = partial(_generate, model, ids, tokens, compiled, compile_kwargs)
                runs[name].append(timed(run, ids.device))
    return {name: (stat(long[name]) - stat(short[name])) / new_tokens * 1000 for name in models}


def prefill_ms(
    models: dict[str, nn.Module], ids: torch.Tensor, repeats: int, statistic: str = "median"
) -> dict[str, float]:
    """Milliseconds of a language-model forward over `ids` (median of the repeats, interleaved across the
    models)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        prefill_seconds(model, ids)  # warm-up
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(prefill_seconds(model, ids))
    return {name: STATISTICS[statistic](t) * 1000 for name, t in times.items()}
