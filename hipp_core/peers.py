"""Torch-Pruning as an external peer: the library chooses what to remove, we score its choice like any plan.

`torch_pruning_blueprint` runs Torch-Pruning (Fang et al., DepGraph, CVPR 2023; pinned 1.6.0) on a copy of the VLM's
language model only, reads back which query heads, KV heads and MLP channels it kept (by matching the pruned weights
with the original rows and columns, so nothing depends on its internals), and returns OUR `Blueprint`. The plan is
then scored by the same masked evaluation, metrics and store as every other plan: only the *choice* is the peer's.

Configuration (ours, fixed so comparisons are at matched decoder sparsity):
- `tp.pruner.MetaPruner` with `tp.importance.MagnitudeImportance(p=2)`, its default magnitude criterion (a unit's
  score is the mean over the coupled weights of the group — gate/up rows and down columns of a channel; q/k/v rows
  and o columns of a head — of their squared L2 norms), and local pruning (`global_pruning=False`): it ranks units
  within each layer, so the per-layer counts are ours and which units fill them is Torch-Pruning's.
- The hidden size is never pruned. Torch-Pruning's LLM recipe (`examples/LLMs/prune_llm.py`) also prunes the
  residual width; in a VLM that would change the projector's output width too, and our units are heads and MLP
  channels only. So embeddings, norms, `o_proj` and `down_proj` (the projections that write the residual stream)
  are `ignored_layers`, the global ratio is 0, and the result is checked: a changed hidden size is an error.
- MLP channels: per-layer ratios in `pruning_ratio_dict`, chosen so Torch-Pruning keeps exactly the widths we ask
  (multiples of `m`, at least `m`, moved one m-block at a time until the decoder sparsity is as close to the budget
  as blocks allow). Its own `round_to` is not used: asking for the exact count leaves nothing to adjust afterwards.
- Attention heads (`num_heads`, `prune_num_heads=True`, `prune_head_dims=False`, head_dim never changes):
  per layer floor(ρ·H) heads are removed, so attention never loses more than the budget and the MLP takes the
  rest. Torch-Pruning enters its head-removal branch only when the attention group also has a positive width
  ratio, so q_proj gets ratio 0.5 as that switch; with `prune_head_dims=False` it removes no dimension itself.

Which configuration runs (docs/design.md, Torch-Pruning as a peer, has the measurements):
- MHA (as many KV heads as query heads): heads + MLP channels.
- GQA (fewer KV heads, as in every embedded model): MLP channels only, attention kept dense, the whole budget
  taken by the MLP (up to what it holds; beyond that a `HippError` names the reachable maximum). With q/k/v
  prunable, Torch-Pruning 1.6.0 never finishes building its dependency graph under GQA: the index mapping through
  repeat_kv's expand/reshape shifts the indices on every trip around the q-k-v cycle, so its visited check never
  stops the walk. `heads=True` still tries it, in the child process killed at `timeout_s`, and raises a one-line
  `HippError` naming that failure. An MHA-equivalent
  view (k/v weights repeated per query head) was not used: Torch-Pruning would then choose heads freely, which can
  leave KV groups with unequal head counts (not a valid GQA plan), and it would count the copies as prunable.

Torch-Pruning always runs in a child process (`python -c`, not multiprocessing, so the caller's `__main__` is never
re-imported) that is killed at `timeout_s`: the graph search above is pure Python and would otherwise spin a core
forever. The language model reaches it pickled by value in a temporary file, not through shared memory (containers
often limit /dev/shm to 64 MB).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hipp_core import validation
from hipp_core.blueprint import (
    Blueprint,
    LayerPlan,
    LayerShape,
    blueprint_from_layers,
)
from hipp_core.errors import HippError
from hipp_core.models.adapters import LayerParts, ModelAdapter

TORCH_PRUNING_VERSION = "1.6.0"
CRITERION = "torch-pruning-magnitude"
_HEAD_SWITCH_RATIO = 0.5  # only opens Torch-Pruning's head branch; with prune_head_dims=False it removes nothing
_PART_FIELDS = tuple(f.name for f in fields(LayerParts))
_UNIT_NAMES = {"heads": "query head", "kv": "KV head", "mlp": "MLP channel"}


@dataclass(frozen=True)
class PeerSpec:
    """What Torch-Pruning is asked to do, per decoder layer; everything the child process needs besides weights."""

    parts: tuple[dict[str, str], ...]  # per layer: LayerParts field → module name inside the language model
    shapes: tuple[LayerShape, ...]
    prune_heads: bool
    kept_heads: tuple[int, ...]  # query heads each layer keeps
    kept_kv: tuple[int, ...]  # KV heads each layer keeps (all of them under GQA: Torch-Pruning drops query heads)
    kept_mlp: tuple[int, ...]  # MLP channels each layer keeps

    @property
    def configuration(self) -> str:
        """One line for reports: what the peer prunes here and what it leaves alone."""
        if not self.prune_heads:
            what = "MLP channels only, attention dense"
        elif _is_gqa(self.shapes):
            what = "query heads (the same number per KV group, KV heads kept) + MLP channels"
        else:
            what = "attention heads (each with its k/v head) + MLP channels"
        return f"Torch-Pruning {_installed_version()} MetaPruner, L2 magnitude, local ranking: {what}; hidden size kept"


def _installed_version() -> str:
    try:
        return importlib.metadata.version("torch-pruning")
    except importlib.metadata.PackageNotFoundError:
        return f"{TORCH_PRUNING_VERSION} (not installed)"


def _is_gqa(shapes: tuple[LayerShape, ...]) -> bool:
    return any(s.n_kv_heads < s.n_heads for s in shapes)


def _heads_phrase(shapes: tuple[LayerShape, ...]) -> str:
    s = shapes[0]
    return f"{'a GQA' if _is_gqa(shapes) else 'an MHA'} decoder ({s.n_heads} query / {s.n_kv_heads} KV heads)"


def peer_spec(adapter: ModelAdapter, sparsity: float, m: int, heads: bool | None = None) -> PeerSpec:
    """Per-layer unit counts at decoder sparsity `sparsity`: floor(ρ·H) heads removed per layer when heads are
    pruned (None: only for MHA decoders, see the module docstring), then MLP widths in m-blocks, greedily moved one
    block at a time where that brings the overall sparsity closest to ρ."""
    validation.sparsity(sparsity)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise HippError(f"channel multiple m={m!r} must be a positive integer")
    shapes = tuple(adapter.layer_shapes())
    prune_heads = not _is_gqa(shapes) if heads is None else bool(heads)
    kept_heads, kept_kv = [], []
    for s in shapes:
        r = s.group_size
        if not prune_heads:
            n_kv, n_q = s.n_kv_heads, s.n_heads
        elif r == 1:  # MHA: a head goes with its own k/v head
            n_kv = n_q = s.n_heads - min(math.floor(sparsity * s.n_heads + 1e-9), s.n_heads - 1)
        else:  # Torch-Pruning's GQA rule: the same number of query heads out of every KV group, KV heads kept
            n_kv, n_q = s.n_kv_heads, (r - min(math.floor(sparsity * r + 1e-9), r - 1)) * s.n_kv_heads
        kept_heads.append(n_q)
        kept_kv.append(n_kv)
    kept_mlp = _mlp_widths(shapes, kept_kv, kept_heads, sparsity, m, prune_heads)
    names = {module: name for name, module in adapter.language_model.named_modules()}
    parts = tuple({f: names[getattr(adapter.layer_parts(i), f)] for f in _PART_FIELDS} for i in range(len(shapes)))
    return PeerSpec(parts, shapes, prune_heads, tuple(kept_heads), tuple(kept_kv), tuple(kept_mlp))


def _mlp_widths(
    shapes: tuple[LayerShape, ...], kept_kv: list[int], kept_heads: list[int], sparsity: float, m: int, heads: bool
) -> list[int]:
    """MLP widths (multiples of m, ≥ m, or the full width) whose overall sparsity is closest to ρ.

    Each layer starts at the width closest to its own share of the budget; then single m-block moves are made
    wherever one brings the total closest to the goal, until none helps. At least m channels stay in every layer:
    the peer never asks Torch-Pruning to empty a linear layer."""
    options = [np.union1d(np.arange(min(m, s.intermediate), s.intermediate + 1, m), [s.intermediate]) for s in shapes]
    kept = [
        np.asarray(s.params(n_kv, n_q, widths), dtype=float)
        for s, n_kv, n_q, widths in zip(shapes, kept_kv, kept_heads, options)
    ]
    dense = np.array([s.dense_params for s in shapes], dtype=float)
    reachable = 1.0 - sum(k[0] for k in kept) / dense.sum()
    if sparsity > reachable + 1e-9:
        raise HippError(
            f"sparsity {sparsity:.4f} is beyond what the Torch-Pruning peer can remove here, {reachable:.4f} "
            f"(attention {'heads pruned' if heads else 'kept dense'}, at least {m} MLP channels per layer); "
            "lower the sparsity"
        )
    picks = [int(np.argmin(np.abs(k - (1.0 - sparsity) * d))) for k, d in zip(kept, dense)]
    goal = (1.0 - sparsity) * dense.sum()
    while True:
        error = sum(k[j] for k, j in zip(kept, picks)) - goal
        best, best_error = None, abs(error)
        for layer, (k, j) in enumerate(zip(kept, picks)):
            for nxt in (j - 1, j + 1):
                if 0 <= nxt < len(k) and abs(error + k[nxt] - k[j]) < best_error:
                    best, best_error = (layer, nxt), abs(error + k[nxt] - k[j])
        if best is None:
            return [int(options[layer][j]) for layer, j in enumerate(picks)]
        picks[best[0]] = best[1]


class _HiddenStates(nn.Module):
    """Torch-Pruning traces `forward(example_inputs)` and needs a tensor out; transformers returns a ModelOutput
    (a tuple-like that breaks its tracing with "'tuple' object has no attribute 'grad_fn'")."""

    def __init__(self, language_model: nn.Module) -> None:
        super().__init__()
        self.language_model = language_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.language_model(input_ids=input_ids, use_cache=False).last_hidden_state


def run_torch_pruning(
    language_model: nn.Module, spec: PeerSpec, phase: Path | None = None, inplace: bool = False
) -> tuple[nn.Module, list[LayerPlan]]:
    """Prune a copy of `language_model` (the model itself with `inplace`, as the child process does with its own
    unpickled copy, so a large model is not held three times) with Torch-Pruning as `spec` asks; return the pruned
    module and, per layer, the LayerPlan of what it kept. In-process: may never return for GQA with heads (use
    `torch_pruning_blueprint`, which runs this in a child process with a timeout).

    `phase`, when given, is a file rewritten at each step, so a parent that kills this on timeout knows where."""
    import torch_pruning as tp

    def enter(what: str) -> None:
        if phase is not None:
            phase.write_text(what)

    pruned = (language_model if inplace else copy.deepcopy(language_model)).eval()
    parts = [{f: pruned.get_submodule(name) for f, name in layer.items()} for layer in spec.parts]
    before = [_unit_digests(p, shape) for p, shape in zip(parts, spec.shapes)]
    pruned.requires_grad_(True)  # Torch-Pruning traces the autograd graph: outputs need a grad_fn
    linears = {module for layer in parts for module in layer.values()}
    ignored: list[nn.Module] = [p["o"] for p in parts] + [p["down"] for p in parts]
    unwrapped = []
    for module in pruned.modules():
        own = list(module.parameters(recurse=False))
        if own and module not in linears:  # embeddings and norms: the residual width
            ignored.append(module)
            unwrapped += [(p, p.dim() - 1) for p in own if not isinstance(module, nn.Embedding)]
    ratios: dict[nn.Module, float] = {}
    head_ratios: dict[nn.Module, float] = {}
    num_heads: dict[nn.Module, int] = {}
    for p, shape, n_q, n_mlp in zip(parts, spec.shapes, spec.kept_heads, spec.kept_mlp):
        if n_mlp < shape.intermediate:  # asking for k+0.5 kept makes its int() land on exactly k
            ratios[p["gate"]] = 1.0 - (n_mlp + 0.5) / shape.intermediate
        if not spec.prune_heads:
            ignored += [p["q"], p["k"], p["v"]]
            continue
        num_heads.update({p["q"]: shape.n_heads, p["k"]: shape.n_kv_heads, p["v"]: shape.n_kv_heads})
        if n_q < shape.n_heads:  # Torch-Pruning removes ceil(ratio·H) heads: ask for (removed − 0.5)/H
            ratios[p["q"]] = _HEAD_SWITCH_RATIO
            head_ratios.update(dict.fromkeys((p["q"], p["k"], p["v"]), (shape.n_heads - n_q - 0.5) / shape.n_heads))
    wrapper = _HiddenStates(pruned).eval()
    embeddings = pruned.get_input_embeddings()
    example = torch.arange(8, device=embeddings.weight.device).remainder(embeddings.num_embeddings)[None]
    enter("build its dependency graph")
    with torch.enable_grad():  # it traces the autograd graph, even when the caller runs under no_grad
        pruner = tp.pruner.MetaPruner(
            wrapper,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            global_pruning=False,
            pruning_ratio=0.0,
            pruning_ratio_dict=ratios,
            ignored_layers=ignored,
            num_heads=num_heads,
            prune_num_heads=spec.prune_heads,
            prune_head_dims=False,
            head_pruning_ratio_dict=head_ratios,
            unwrapped_parameters=unwrapped,
        )
    enter("prune")
    pruner.step()
    pruned.requires_grad_(False)
    enter("read back what it kept")
    plans = [_kept_units(i, b, p, shape) for i, (b, p, shape) in enumerate(zip(before, parts, spec.shapes))]
    for i, (plan, n_q, n_kv, n_mlp) in enumerate(zip(plans, spec.kept_heads, spec.kept_kv, spec.kept_mlp)):
        if (plan.n_q, plan.n_kv, plan.n_mlp) != (n_q, n_kv, n_mlp):
            raise HippError(
                f"layer {i}: Torch-Pruning kept {plan.n_q} query / {plan.n_kv} KV heads and {plan.n_mlp} MLP "
                f"channels, asked for {n_q} / {n_kv} and {n_mlp}"
            )
    return pruned, plans


def _unit_digests(parts: dict[str, nn.Linear], shape: LayerShape) -> dict[str, list[bytes]]:
    """A fingerprint of every query head, KV head and MLP channel: a hash of the unit's coupled weights (rows of
    q / k, v / gate, up and biases, columns of o / down), so kept units are recognised after pruning by exact
    equality, whatever order Torch-Pruning keeps them in and however it records its deletions."""
    hd = shape.head_dim
    return {
        "heads": _units(parts, ("q",), ("o",), hd),
        "kv": _units(parts, ("k", "v"), (), hd),
        "mlp": _units(parts, ("gate", "up"), ("down",), 1),
    }


def _kept_units(i: int, before: dict[str, list[bytes]], after: dict[str, nn.Linear], shape: LayerShape) -> LayerPlan:
    """Which original units survive; checks first that the hidden size is untouched."""
    for f in ("q", "k", "v", "gate", "up"):
        if after[f].in_features != shape.hidden:
            raise HippError(f"layer {i}: Torch-Pruning changed the hidden size ({f}_proj reads {after[f].in_features})")
    for f in ("o", "down"):
        if after[f].out_features != shape.hidden:
            raise HippError(
                f"layer {i}: Torch-Pruning changed the hidden size ({f}_proj writes {after[f].out_features})"
            )
    now = _unit_digests(after, shape)
    kept = {key: _match(i, what, before[key], now[key]) for key, what in _UNIT_NAMES.items()}
    return LayerPlan(kv_groups=kept["kv"], heads=kept["heads"], mlp=kept["mlp"])


def _units(parts: dict[str, nn.Linear], rows: tuple[str, ...], cols: tuple[str, ...], size: int) -> list[bytes]:
    """One digest per unit of `size` rows (and columns): its weights and biases, concatenated and hashed."""
    pieces = []
    for f in rows:
        pieces.append(parts[f].weight.detach().reshape(-1, size * parts[f].in_features))
        if parts[f].bias is not None:
            pieces.append(parts[f].bias.detach().reshape(-1, size))
    for f in cols:
        w = parts[f].weight.detach().reshape(parts[f].out_features, -1, size).transpose(0, 1)
        pieces.append(w.flatten(1))
    units = torch.cat([p.float().cpu() for p in pieces], dim=1).contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in units]


def _match(i: int, what: str, before: list[bytes], after: list[bytes]) -> tuple[int, ...]:
    index = {key: j for j, key in enumerate(before)}
    if len(index) != len(before):
        raise HippError(f"layer {i}: two {what}s have identical weights, so the kept ones cannot be told apart")
    if any(key not in index for key in after):
        raise HippError(f"layer {i}: Torch-Pruning changed the weights of a kept {what}; cannot map it back")
    return tuple(sorted(index[key] for key in after))


def torch_pruning_blueprint(
    adapter: ModelAdapter,
    model_id: str,
    family: str,
    sparsity: float,
    m: int,
    *,
    heads: bool | None = None,
    timeout_s: float = 60,
) -> Blueprint:
    """The Torch-Pruning peer's plan at decoder sparsity `sparsity`, as our Blueprint (source 'baseline').

    `heads=None` prunes heads + MLP channels on MHA decoders and MLP channels only on GQA ones (module docstring);
    `heads=True` tries heads under GQA too. Torch-Pruning runs in a child process killed after `timeout_s`
    seconds; any failure, the timeout included, is a one-line HippError that says what failed."""
    if importlib.util.find_spec("torch_pruning") is None:
        raise HippError(
            f"the Torch-Pruning peer needs torch-pruning; install it with "
            f"`pip install --no-deps torch-pruning=={TORCH_PRUNING_VERSION}`"
        )
    if not (isinstance(timeout_s, int | float) and timeout_s > 0):
        raise HippError(f"timeout must be a positive number of seconds, got {timeout_s}")
    spec = peer_spec(adapter, sparsity, m, heads)
    plans = _in_child(adapter.language_model, spec, float(timeout_s))
    shapes = list(spec.shapes)
    return blueprint_from_layers(model_id, family, shapes, sparsity, plans, m, 0.9, "baseline", None, CRITERION)


def _in_child(language_model: nn.Module, spec: PeerSpec, timeout_s: float) -> list[LayerPlan]:
    version = _installed_version()
    with tempfile.TemporaryDirectory(prefix="hipp-peer-") as tmp:
        work = Path(tmp)
        (work / "payload.pkl").write_bytes(pickle.dumps((language_model, spec)))
        (work / "phase").write_text("start (import torch, transformers, torch_pruning)")
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
        code = "import sys; from hipp_core.peers import _child_main; _child_main(sys.argv[1])"
        with open(work / "stderr", "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, tmp], stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise HippError(
                    f"Torch-Pruning {version} could not {(work / 'phase').read_text()} for "
                    f"{_heads_phrase(spec.shapes)} within {timeout_s:g} s (configuration: {spec.configuration})"
                    + ("; run the peer with heads=False (MLP channels only)" if spec.prune_heads else "")
                ) from None
            finally:  # on timeout, and on anything else (Ctrl-C): never leave it spinning a core
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if (work / "error").exists():
            raise HippError((work / "error").read_text())
        if rc != 0 or not (work / "result.json").exists():
            lines = [x for x in (work / "stderr").read_text(errors="replace").splitlines() if x.strip()]
            raise HippError(
                f"Torch-Pruning {version} failed on {_heads_phrase(spec.shapes)} "
                f"while trying to {(work / 'phase').read_text()} (exit {rc}): {lines[-1] if lines else 'no message'}"
            )
        return [LayerPlan.from_json(x) for x in json.loads((work / "result.json").read_text())["plans"]]


def _child_main(workdir: str) -> None:
    """Entry point of the child process: read the payload, prune, write the kept units (or a one-line error)."""
    from hipp_core.config import quiet_libraries, set_threads

    quiet_libraries()
    set_threads()
    work = Path(workdir)
    language_model, spec = pickle.loads((work / "payload.pkl").read_bytes())  # our own bytes, written just now
    try:
        _, plans = run_torch_pruning(language_model, spec, phase=work / "phase", inplace=True)
    except HippError as exc:
        (work / "error").write_text(str(exc))
        return
    result = {"plans": [p.to_json() for p in plans]}
    tmp = work / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, work / "result.json")
