"""Turning a blueprint into a model: a masked view for fast scoring, and physical materialization.

The masked view zeroes, with forward pre-hooks, the inputs of `o_proj` that belong to pruned query heads and the
inputs of `down_proj` that belong to pruned MLP channels. A pruned head or channel then contributes exactly
nothing, which is what removing it does, so scoring thousands of plans needs no weight copies; attaching and
removing the hooks is free. Physical materialization slices the projections and sets the per-layer
`num_key_value_groups`; both paths agree to float rounding (tested ≤ 1e-4 on logits).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from hipp_core.blueprint import Blueprint, LayerPlan, LayerShape
from hipp_core.errors import HippError
from hipp_core.models.adapters import LayerParts, ModelAdapter


def _check_layers(adapter: ModelAdapter, blueprint: Blueprint) -> None:
    if len(blueprint.layers) != len(adapter.decoder_layers):
        raise HippError(
            f"blueprint has {len(blueprint.layers)} layers, the model {len(adapter.decoder_layers)}; "
            "was it made for another model?"
        )


def check_pruned(adapter: ModelAdapter, blueprint: Blueprint) -> None:
    """Refuse a model whose decoder does not have the shapes `blueprint` prunes to (a dense model, another plan)."""
    _check_layers(adapter, blueprint)
    for i, (shape, plan) in enumerate(zip(adapter.layer_shapes(), blueprint.layers)):
        if (shape.n_heads, shape.n_kv_heads, shape.intermediate) != (plan.n_q, plan.n_kv, plan.n_mlp):
            raise HippError(
                f"decoder layer {i} has {shape.n_heads} query heads, {shape.n_kv_heads} KV heads and "
                f"{shape.intermediate} MLP channels, but plan {blueprint.plan_id} keeps {plan.n_q}, {plan.n_kv} and "
                f"{plan.n_mlp}; pass the model pruned with this plan"
            )


def _masks(shape: LayerShape, plan: LayerPlan) -> tuple[torch.Tensor, torch.Tensor]:
    head = torch.zeros(shape.n_heads, dtype=torch.bool)
    head[list(plan.heads)] = True
    mlp = torch.zeros(shape.intermediate, dtype=torch.bool)
    mlp[list(plan.mlp)] = True
    return head.repeat_interleave(shape.head_dim), mlp


@contextmanager
def masked(adapter: ModelAdapter, blueprint: Blueprint) -> Iterator[ModelAdapter]:
    """The dense model behaving as the pruned one while the context is open."""
    _check_layers(adapter, blueprint)
    handles = []
    try:
        shapes = adapter.layer_shapes()
        for i, plan in enumerate(blueprint.layers):
            attn_mask, mlp_mask = _masks(shapes[i], plan)
            parts = adapter.layer_parts(i)
            for module, mask in ((parts.o, attn_mask), (parts.down, mlp_mask)):
                if bool(mask.all()):
                    continue
                handles.append(module.register_forward_pre_hook(_zero_inputs(mask)))
        yield adapter
    finally:
        for h in handles:
            h.remove()


def _zero_inputs(mask: torch.Tensor):
    cache: dict[tuple, torch.Tensor] = {}

    def hook(module: nn.Module, args):
        x = args[0]
        key = (x.device, x.dtype)
        if key not in cache:
            cache[key] = mask.to(device=x.device, dtype=x.dtype)
        return (x * cache[key], *args[1:])

    return hook


def _slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    weight = linear.weight.detach()
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    bias = linear.bias
    if bias is not None and rows is not None:
        bias = bias.detach()[rows]
    with warnings.catch_warnings():  # a layer pruned to zero MLP channels makes zero-element weights, on purpose
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        new = nn.Linear(
            weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype
        )
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def materialize(adapter: ModelAdapter, blueprint: Blueprint, inplace: bool = False) -> ModelAdapter:
    """A physically smaller copy of the model (or the model itself with `inplace`)."""
    _check_layers(adapter, blueprint)
    shapes = adapter.layer_shapes()
    target = adapter if inplace else adapter.clone()
    for i, plan in enumerate(blueprint.layers):
        shape = shapes[i]
        parts = target.layer_parts(i)
        hd = shape.head_dim
        q_rows = _unit_rows(plan.heads, hd)
        kv_rows = _unit_rows(plan.kv_groups, hd)
        mlp = torch.tensor(sorted(plan.mlp), dtype=torch.long)
        sliced = LayerParts(
            q=_slice_linear(parts.q, rows=q_rows),
            k=_slice_linear(parts.k, rows=kv_rows),
            v=_slice_linear(parts.v, rows=kv_rows),
            o=_slice_linear(parts.o, cols=q_rows),
            gate=_slice_linear(parts.gate, rows=mlp),
            up=_slice_linear(parts.up, rows=mlp),
            down=_slice_linear(parts.down, cols=mlp),
        )
        target.replace_layer_parts(i, sliced, kv_groups=len(plan.heads) // len(plan.kv_groups))
    return target


def _unit_rows(units, size: int) -> torch.Tensor:
    units = torch.tensor(sorted(units), dtype=torch.long)
    return (units[:, None] * size + torch.arange(size)[None]).reshape(-1)
