"""Per-layer state features and within-layer unit scores, computed once per (model, calibration set).

What is measured (our definitions; docs/design.md, Calibration features):
- `v_attn[l]`: mean over samples, heads and the text query positions after the image of the attention mass
  that layer l puts on image-token keys: how much the layer reads the image.
- `v_flow[l]`: attention rollout (Abnar & Zuidema 2020, residual-mixed 0.5·A + 0.5·I) share of image tokens in
  the representation of the last prompt position after layer l, minus the same share before it: how much visual
  information layer l adds to where the answer is produced.
- Wanda-sp unit scores: sum over a unit's weights of |W| times the calibration norm of the input feature each
  weight reads. A query head owns its q_proj rows and o_proj columns; a KV group its k/v rows; an MLP channel its
  gate/up rows and down_proj column. `magnitude` is the same without activation norms.
- SynFlow saliency (Tanaka et al. 2020), layer-local and data-free: each decoder layer on its own, weights
  replaced by |θ|, an all-ones input, R = sum of the output; saliency |θ · ∂R/∂θ| summed per unit. Layer-local
  because the stability proxy only compares units within a layer, and chaining 32 layers of |θ| overflows. Each
  layer runs as a float32 copy: in float16 the all-ones activations of |θ| overflow within one MLP.

Everything runs with eager attention (sdpa returns no attention weights; the model is switched in place and back)
on the `calib` split, deterministically, on the model's own device.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from hipp_core.blueprint import LayerShape
from hipp_core.data.prompts import pope_prompt
from hipp_core.data.records import PopeItem
from hipp_core.errors import HippError
from hipp_core.evaluation.engine import open_image
from hipp_core.models.adapters import ModelAdapter
from hipp_core.models.device import attention_implementation

Progress = Callable[[str, int, int], None]


@dataclass
class CalibrationFeatures:
    model_id: str
    samples: int
    v_attn: list[float]
    v_flow: list[float]
    act_norm: list[float]  # mean L2 norm of each layer's input hidden state (after its input norm)
    head_wanda: list[list[float]]  # [layer][query head]
    kv_wanda: list[list[float]]  # [layer][kv group]: k/v rows only
    mlp_wanda: list[list[float]]  # [layer][channel]
    head_magnitude: list[list[float]]
    kv_magnitude: list[list[float]]
    mlp_magnitude: list[list[float]]
    head_synflow: list[list[float]]
    mlp_synflow: list[list[float]]
    outlier_ratio: list[float]  # OWL (Yin et al. 2023): share of weights whose |W|·‖X‖ exceeds 5x the layer mean

    @property
    def n_layers(self) -> int:
        return len(self.v_attn)

    def synflow_share(self) -> list[float]:
        """Each layer's share of the model's total SynFlow saliency (a policy state feature)."""
        totals = [sum(h) + sum(m) for h, m in zip(self.head_synflow, self.mlp_synflow)]
        grand = sum(totals) or 1.0
        return [t / grand for t in totals]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> CalibrationFeatures:
        return cls(**data)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        tmp.replace(path)


class _Recorder:
    """Forward hooks that accumulate squared input norms per feature for the projections Wanda reads."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self.sq: dict[tuple[int, str], torch.Tensor] = {}
        self.tokens: dict[tuple[int, str], int] = {}
        self.mask: torch.Tensor | None = None  # real (non-padding) tokens of the batch being recorded
        self.handles = []
        for i in range(len(adapter.decoder_layers)):
            parts = adapter.layer_parts(i)
            for name in ("q", "o", "down"):
                self.handles.append(getattr(parts, name).register_forward_pre_hook(self._hook(i, name)))

    def _hook(self, layer: int, name: str):
        def record(module: nn.Module, args) -> None:
            x = args[0].detach().float()
            mask = self.mask
            flat = x[mask] if mask is not None else x.reshape(-1, x.shape[-1])
            key = (layer, name)
            self.sq[key] = self.sq.get(key, 0) + flat.pow(2).sum(0)
            self.tokens[key] = self.tokens.get(key, 0) + flat.shape[0]

        return record

    def norms(self, layer: int, name: str) -> torch.Tensor:
        return self.sq[(layer, name)].sqrt()

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _rollout_shares(attentions: tuple[torch.Tensor, ...], image_mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """[layers] image share in the last position's rollout after each layer, averaged over the batch."""
    batch, seq = image_mask.shape
    eye = torch.eye(seq, device=image_mask.device)
    rollout = eye.expand(batch, seq, seq).clone()
    shares = []
    for attn in attentions:
        a = attn.float().mean(1)  # average heads
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        rollout = a @ rollout
        row = rollout[torch.arange(batch, device=last.device), last]  # [batch, seq]
        shares.append((row * image_mask).sum(-1).mean())
    return torch.stack(shares)


@torch.no_grad()
def _activation_pass(
    adapter: ModelAdapter, items: list[PopeItem], batch_size: int, progress: Progress | None
) -> tuple[_Recorder, list[float], list[float], list[float]]:
    model = adapter.model
    device = next(model.parameters()).device
    recorder = _Recorder(adapter)
    n_layers = len(adapter.decoder_layers)
    v_attn = torch.zeros(n_layers, device=device)
    shares_sum = torch.zeros(n_layers, device=device)
    norm_sum = torch.zeros(n_layers, device=device)
    batches = 0
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            enc = adapter.encode([pope_prompt(it.text) for it in batch], [open_image(it.image, False) for it in batch])
            inputs = enc.inputs  # on the model's device
            mask = inputs["attention_mask"].bool()
            recorder.mask = mask
            out = model(**inputs, output_attentions=True, use_cache=False)
            image = inputs["input_ids"] == adapter.image_token_id
            if not image.any():
                raise HippError("calibration samples carry no image tokens; is this a vision-language processor?")
            index = torch.arange(image.shape[1], device=image.device)
            last_image = (image.long() * index).amax(1)
            after = (index[None] > last_image[:, None]) & mask  # text after the image
            for layer, attn in enumerate(out.attentions):
                mass = (attn.float() * image[:, None, None, :]).sum(-1)  # [batch, heads, query]
                per_query = mass.mean(1)
                v_attn[layer] += (per_query * after).sum() / after.sum()
            last = mask.sum(1) - 1
            shares_sum += _rollout_shares(out.attentions, image.float(), last)
            for layer in range(n_layers):
                key = (layer, "q")
                norm_sum[layer] += recorder.sq[key].sum().sqrt() / max(1, recorder.tokens[key]) ** 0.5
            batches += 1
            if progress:
                progress("calibrate", min(len(items), start + batch_size), len(items))
    finally:
        recorder.close()
    shares = shares_sum / batches
    v_flow = shares - torch.cat([torch.zeros(1, device=device), shares[:-1]])
    return recorder, (v_attn / batches).tolist(), v_flow.tolist(), (norm_sum / batches).tolist()


def _unit_scores(adapter: ModelAdapter, layer: int, shape: LayerShape, norms: dict[str, torch.Tensor] | None):
    """(head, kv, mlp) scores: Wanda-sp with activation norms, magnitude when `norms` is None."""
    parts = adapter.layer_parts(layer)
    ones = lambda n: torch.ones(n, device=parts.q.weight.device)
    x_in = norms["q"] if norms else ones(parts.q.in_features)
    z = norms["o"] if norms else ones(parts.o.in_features)
    h = norms["down"] if norms else ones(parts.down.in_features)
    hd = shape.head_dim
    q = (parts.q.weight.detach().float().abs() * x_in).sum(1).view(shape.n_heads, hd).sum(1)
    o = (parts.o.weight.detach().float().abs() * z).sum(0).view(shape.n_heads, hd).sum(1)
    k = (parts.k.weight.detach().float().abs() * x_in).sum(1).view(shape.n_kv_heads, hd).sum(1)
    v = (parts.v.weight.detach().float().abs() * x_in).sum(1).view(shape.n_kv_heads, hd).sum(1)
    gate = (parts.gate.weight.detach().float().abs() * x_in).sum(1)
    up = (parts.up.weight.detach().float().abs() * x_in).sum(1)
    down = (parts.down.weight.detach().float().abs() * h).sum(0)
    return (q + o).tolist(), (k + v).tolist(), (gate + up + down).tolist()


OWL_M = 5.0  # OWL's outlier threshold: a weight is an outlier above M times its layer's mean Wanda metric


def _outlier_ratio(adapter: ModelAdapter, layer: int, norms: dict[str, torch.Tensor]) -> float:
    parts = adapter.layer_parts(layer)
    reads = {"q": "q", "k": "q", "v": "q", "gate": "q", "up": "q", "o": "o", "down": "down"}
    metrics = [
        (getattr(parts, name).weight.detach().float().abs() * norms[source]).flatten() for name, source in reads.items()
    ]
    flat = torch.cat(metrics)
    return (flat > OWL_M * flat.mean()).float().mean().item()


def _synflow(adapter: ModelAdapter, layer: int, shape: LayerShape, seq: int = 8) -> tuple[list[float], list[float]]:
    original = adapter.decoder_layers[layer]
    parts = adapter.layer_parts(layer)
    names = {id(p): n for n, p in original.named_parameters()}
    # A float32 copy with |θ| as weights: the model itself is never touched, and the copy costs one layer.
    absolute = copy.deepcopy(original).float()
    with torch.no_grad():
        for p in absolute.parameters():
            p.abs_()
    params = dict(absolute.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    device = next(absolute.parameters()).device
    hidden = torch.ones(1, seq, shape.hidden, device=device)
    out = adapter.run_layer(layer, hidden, absolute)
    out.sum().backward()
    sal = {n: (p * p.grad).abs().detach() for n, p in params.items() if p.grad is not None}
    of = lambda linear: sal[names[id(linear.weight)]]
    hd = shape.head_dim
    q = of(parts.q).sum(1).view(shape.n_heads, hd).sum(1)
    o = of(parts.o).sum(0).view(shape.n_heads, hd).sum(1)
    mlp = of(parts.gate).sum(1) + of(parts.up).sum(1) + of(parts.down).sum(0)
    return (q + o).tolist(), mlp.tolist()


def calibrate(
    adapter: ModelAdapter, model_id: str, items: list[PopeItem], batch_size: int = 16, progress: Progress | None = None
) -> CalibrationFeatures:
    if not items:
        raise HippError("no calibration samples: the calib split is empty")
    with attention_implementation(adapter.model, "eager"), _leaves_no_hooks(adapter.model):
        return _calibrate(adapter, model_id, items, batch_size, progress)


_HOOKED = "_output_capturing_hooks_installed"  # transformers' mark on a model it has put capturing hooks on


@contextmanager
def _leaves_no_hooks(model: nn.Module) -> Iterator[None]:
    """Remove, afterwards, the forward hooks transformers installs (and keeps) on a model the first time attention
    maps are asked of it. Calibration works on the one copy every other command uses; hooks left behind would make
    it differ from a freshly loaded model, e.g. it could no longer be pickled for the Torch-Pruning peer's child
    process (the hooks are local functions)."""
    before = {id(m): set(m._forward_hooks) for m in model.modules()}
    marked = {id(m) for m in model.modules() if getattr(m, _HOOKED, False)}
    try:
        yield
    finally:
        for module in model.modules():
            for key in set(module._forward_hooks) - before.get(id(module), set()):
                module._forward_hooks.pop(key)
                module._forward_hooks_with_kwargs.pop(key, None)
                module._forward_hooks_always_called.pop(key, None)
            if id(module) not in marked and _HOOKED in vars(module):
                delattr(module, _HOOKED)


def _calibrate(
    adapter: ModelAdapter, model_id: str, items: list[PopeItem], batch_size: int, progress: Progress | None
) -> CalibrationFeatures:
    recorder, v_attn, v_flow, act_norm = _activation_pass(adapter, items, batch_size, progress)
    n = len(adapter.decoder_layers)
    norms = [{k: recorder.norms(i, k) for k in ("q", "o", "down")} for i in range(n)]
    shapes = adapter.layer_shapes()
    wanda = [_unit_scores(adapter, i, shapes[i], norms[i]) for i in range(n)]
    magnitude = [_unit_scores(adapter, i, shapes[i], None) for i in range(n)]
    synflow = [_synflow(adapter, i, shapes[i]) for i in range(n)]
    return CalibrationFeatures(
        model_id=model_id,
        samples=len(items),
        v_attn=v_attn,
        v_flow=v_flow,
        act_norm=act_norm,
        head_wanda=[w[0] for w in wanda],
        kv_wanda=[w[1] for w in wanda],
        mlp_wanda=[w[2] for w in wanda],
        head_magnitude=[m[0] for m in magnitude],
        kv_magnitude=[m[1] for m in magnitude],
        mlp_magnitude=[m[2] for m in magnitude],
        head_synflow=[s[0] for s in synflow],
        mlp_synflow=[s[1] for s in synflow],
        outlier_ratio=[_outlier_ratio(adapter, i, norms[i]) for i in range(n)],
    )
