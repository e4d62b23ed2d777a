"""The stock layout of a pruned model: one set of sizes for every decoder layer, so that an export loads as the
family's own transformers class from a stock config, without remote code, in plain transformers and in inference
servers that only know the stock architectures.

A plan whose layers all keep the same counts (`make_blueprint(..., equal_counts=True)`) fits a stock config as it
is. Any other plan is zero-padded, layer by layer, up to the largest counts kept in any layer; padding adds exactly
nothing to the output:
- a padded MLP channel has zero gate and up rows (and biases), so act(0) · 0 = 0, and a zero down_proj column;
- a padded query head has zero q rows and bias, so all its scores are 0 and it attends uniformly; whatever it then
  reads (the real values of its group, or the zero values of a padded KV group, whose k/v rows and biases are zero),
  its o_proj columns are zero;
- real heads keep their pairing: the i-th kept KV group becomes stock group i and its k query heads the first k
  query slots of that group, which is how `repeat_kv` pairs query heads with KV heads.
Padded weights still cost disk, memory and work at run time; `StockSizes` says how much of the saving that gives back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from hipp_core.blueprint import Blueprint, LayerShape, count_params
from hipp_core.errors import HippError
from hipp_core.models.adapters import LayerParts, ModelAdapter


@dataclass(frozen=True)
class StockLayout:
    """The sizes a stock config declares for every decoder layer."""

    n_heads: int
    n_kv_heads: int
    intermediate: int
    head_dim: int  # written explicitly: with fewer heads the config's default (hidden / heads) would change it

    @property
    def group_size(self) -> int:
        return self.n_heads // self.n_kv_heads


def stock_layout(shapes: Sequence[LayerShape], head_counts: Sequence[int] | None = None) -> StockLayout:
    """The smallest stock layout that holds every (pruned) layer in `shapes`: at least as many KV groups as the layer
    that keeps most, at least as many query heads per group as the layer that keeps most per group, the widest MLP.
    `head_counts` are the query-head counts the family's stock config accepts (`ModelAdapter.stock_head_counts`;
    None: any); among the layouts they allow, the one with the fewest attention parameters (∝ query + KV heads)."""
    head_dims = {shape.head_dim for shape in shapes}
    if len(head_dims) != 1:
        raise HippError(f"decoder layers have different head sizes {sorted(head_dims)}; no stock config describes that")
    n_kv = max(shape.n_kv_heads for shape in shapes)
    per_group = max(shape.group_size for shape in shapes)
    intermediate = max(shape.intermediate for shape in shapes)
    counts = [n_kv * per_group] if head_counts is None else head_counts
    fits = [(q, kv) for q in counts for kv in range(n_kv, q + 1) if q % kv == 0 and q // kv >= per_group]
    if not fits:
        raise HippError(
            f"no stock layout with {list(counts)} query heads holds {n_kv} KV groups of {per_group} heads; "
            "export with --format exact"
        )
    q, kv = min(fits, key=lambda fit: (fit[0] + fit[1], fit[0]))
    return StockLayout(q, kv, intermediate, head_dims.pop())


@dataclass(frozen=True)
class StockSizes:
    """Parameters of the dense model, of the exactly pruned one and of its stock (padded) export."""

    layout: StockLayout
    decoder_dense: int
    decoder_pruned: int
    decoder_stock: int
    model_dense: int
    model_pruned: int
    model_stock: int

    @property
    def padded(self) -> int:
        """Parameters padding adds back."""
        return self.model_stock - self.model_pruned

    @property
    def given_back(self) -> float:
        """Share of the plan's saving that padding gives back (0 when nothing is padded or nothing was removed)."""
        saved = self.model_dense - self.model_pruned
        return self.padded / saved if saved > 0 else 0.0

    @property
    def as_large_as_dense(self) -> bool:
        return self.model_stock >= self.model_dense and self.model_pruned < self.model_dense

    def describe(self) -> str:
        """One paragraph for the CLI and the model card."""
        lay = self.layout
        text = (
            f"stock layout: {lay.n_heads} query heads, {lay.n_kv_heads} KV heads, {lay.intermediate} MLP channels "
            f"in every layer; parameters dense {self.model_dense:,}, exactly pruned {self.model_pruned:,}, "
            f"stock export {self.model_stock:,}"
        )
        if self.as_large_as_dense:
            return (
                text + ". Padding gives back the whole saving: this stock export is as large as the dense model. "
                "Export with --format exact, or make the plan with --equal-counts"
            )
        if self.padded:
            return text + f" (padding gives back {self.given_back:.1%} of the saving; --equal-counts plans need none)"
        return text + " (no padding)"


def stock_sizes(adapter: ModelAdapter, blueprint: Blueprint) -> StockSizes:
    """What a stock export of `blueprint` on the dense model behind `adapter` weighs, from shapes alone."""
    shapes = adapter.layer_shapes()
    kept = [
        replace(s, n_heads=p.n_q, n_kv_heads=p.n_kv, intermediate=p.n_mlp) for s, p in zip(shapes, blueprint.layers)
    ]
    layout = stock_layout(kept, adapter.stock_head_counts())
    dense = count_params(shapes)
    pruned = count_params(shapes, blueprint.layers)
    stock = sum(int(s.params(layout.n_kv_heads, layout.n_heads, layout.intermediate)) for s in shapes)
    model = sum(p.numel() for p in adapter.model.parameters())
    return StockSizes(layout, dense, pruned, stock, model, model - dense + pruned, model - dense + stock)


def pad_to_stock(pruned: ModelAdapter, inplace: bool = False) -> tuple[ModelAdapter, StockLayout]:
    """A copy of the physically pruned model (or the model itself with `inplace`) whose decoder layers all have the
    stock layout's sizes, zero-padded, with a config that declares them."""
    layout = stock_layout(pruned.layer_shapes(), pruned.stock_head_counts())
    target = pruned if inplace else pruned.clone()
    hd = layout.head_dim
    for i, shape in enumerate(target.layer_shapes()):
        parts = target.layer_parts(i)
        k = shape.group_size
        heads = torch.tensor([g * layout.group_size + j for g in range(shape.n_kv_heads) for j in range(k)])
        q_rows = _rows(heads, hd)
        kv_rows = _rows(torch.arange(shape.n_kv_heads), hd)
        channels = torch.arange(shape.intermediate)
        q_width, kv_width = layout.n_heads * hd, layout.n_kv_heads * hd
        padded = LayerParts(
            q=_pad(parts.q, rows=q_rows, size=q_width),
            k=_pad(parts.k, rows=kv_rows, size=kv_width),
            v=_pad(parts.v, rows=kv_rows, size=kv_width),
            o=_pad(parts.o, cols=q_rows, size=q_width),
            gate=_pad(parts.gate, rows=channels, size=layout.intermediate),
            up=_pad(parts.up, rows=channels, size=layout.intermediate),
            down=_pad(parts.down, cols=channels, size=layout.intermediate),
        )
        target.replace_layer_parts(i, padded, kv_groups=layout.group_size)
    text = target.model.config.text_config
    text.num_attention_heads, text.num_key_value_heads = layout.n_heads, layout.n_kv_heads
    text.intermediate_size, text.head_dim = layout.intermediate, hd
    if hasattr(text, "prune_plan"):  # a model loaded from an exact export: its shapes are now the stock ones
        del text.prune_plan
    return target, layout


def _rows(units: torch.Tensor, size: int) -> torch.Tensor:
    return (units[:, None] * size + torch.arange(size)[None]).reshape(-1)


def _pad(linear: nn.Linear, size: int, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """`linear` with its output rows (or input columns) placed at `rows` (`cols`) of a zero Linear `size` wide."""
    weight = linear.weight.detach()
    out_f, in_f = (size, weight.shape[1]) if rows is not None else (weight.shape[0], size)
    bias = linear.bias is not None
    # skip_init: a 7B layer's random initialisation would cost seconds only to be zeroed
    new = torch.nn.utils.skip_init(nn.Linear, in_f, out_f, bias=bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        if rows is not None:
            new.weight[rows] = weight
        else:
            new.weight[:, cols] = weight
        if bias:
            new.bias.zero_()
            if rows is not None:
                new.bias[rows] = linear.bias.detach()
            else:
                new.bias.copy_(linear.bias.detach())  # o_proj / down_proj bias: one per hidden unit, kept as is
    return new
