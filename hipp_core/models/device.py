"""Where a model runs and in which number format, resolved once from what the user asked for.

`device="auto"` is the GPU when torch sees one, else the CPU; `dtype="auto"` is bfloat16 on a GPU (float16 on one
without bfloat16 arithmetic) and float32 on the CPU, where half precision is slow or missing. Whether a device can
run a format is found out by running a tiny matmul in it, not guessed from the CPU's name: an unusable request
fails here with one line, before a model is loaded.

Every stored result that depends on the arithmetic (evaluations, calibrations, recoveries) carries the resolved
settings in its key through `Placement.key_suffix`, which is empty for float32 on the CPU: the settings every result
stored before devices and dtypes were options was computed with, so those results keep being found.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from hipp_core.errors import HippError

AUTO = "auto"
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICE_HELP = "auto (cuda when available, else cpu), cpu, cuda or cuda:N"
DTYPE_HELP = "auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16 or float16"


@dataclass(frozen=True)
class Placement:
    """Resolved settings: a concrete device (`cpu`, `cuda`, `cuda:1`) and a dtype name (a key of `DTYPES`)."""

    device: str = "cpu"
    dtype: str = "float32"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def key_suffix(self) -> str:
        """What goes into a stored result's key: `:cuda-bfloat16`, or nothing for float32 on the CPU (see the
        module docstring). The device type only: two GPUs of one machine compute the same numbers."""
        kind = torch.device(self.device).type
        return "" if (kind, self.dtype) == ("cpu", "float32") else f":{kind}-{self.dtype}"

    def to_json(self) -> dict[str, str]:
        return {"device": self.device, "dtype": self.dtype}


CPU_FLOAT32 = Placement()


def resolve_device(device: str | torch.device | None = AUTO) -> str:
    """`auto`, `cpu`, `cuda` or `cuda:N` → a concrete device string; a GPU asked for but absent is an error."""
    text = AUTO if device is None else str(device).strip().lower()
    if text == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(text)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise HippError(f"unknown device {device!r}; use {DEVICE_HELP}")
    if parsed.type == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        build = (
            f"torch {torch.__version__} was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        )
        raise HippError(f"device {text!r} was asked for but {build}; use --device cpu (or auto)")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise HippError(f"device {text!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s), from cuda:0")
    return text


def dtype_name(dtype: str | torch.dtype) -> str:
    """The name of a dtype given as a name or a torch dtype; anything else is an error listing the choices."""
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if dtype not in names:
            raise HippError(f"dtype {dtype} is not supported; use {DTYPE_HELP}")
        return names[dtype]
    text = str(dtype).strip().lower().removeprefix("torch.")
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}
    text = aliases.get(text, text)
    if text not in DTYPES:
        raise HippError(f"unknown dtype {dtype!r}; use {DTYPE_HELP}")
    return text


@lru_cache(maxsize=16)
def dtype_runs(device: str, dtype: str) -> bool:
    """Whether `device` computes in `dtype`: a tiny matmul is tried and its result checked. Some CPUs and old torch
    builds raise 'not implemented' for half-precision matmuls, others return garbage; both count as no."""
    try:
        a = torch.full((8, 8), 0.5, dtype=DTYPES[dtype], device=device)
        return bool(((a @ a) == 2.0).all())
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> str:
    """`auto` or a dtype → the dtype name to run in on `device` (already resolved); refuses a format the device
    cannot compute in."""
    on_gpu = torch.device(device).type == "cuda"
    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == AUTO):
        if not on_gpu:
            return "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float16"
    name = dtype_name(dtype)
    if name != "float32" and not dtype_runs(device, name):
        where = "this CPU" if not on_gpu else f"GPU {device}"
        raise HippError(f"{where} cannot compute in {name} (a test matmul failed); use --dtype float32")
    return name


def resolve(device: str | torch.device | None = AUTO, dtype: str | torch.dtype | None = AUTO) -> Placement:
    """The placement a model is loaded with, from the user's `device` and `dtype` settings."""
    concrete = resolve_device(device)
    return Placement(concrete, resolve_dtype(dtype, concrete))


def to_model(inputs: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A processor's batch ready for `model`: every tensor on the model's device, floating ones (pixel values) in
    the model's dtype. Integer tensors (ids, masks, grids) keep theirs."""
    param = next(p for p in model.parameters() if p.is_floating_point())
    return {
        k: (v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device))
        if isinstance(v, torch.Tensor)
        else v
        for k, v in inputs.items()
    }


def _implementations(config) -> dict:
    """A config's attention implementation and its sub-configs', in the nested form `set_attn_implementation`
    takes: {"": own, "<sub_config>": {...}}."""
    found = {"": config._attn_implementation}
    for key in getattr(config, "sub_configs", {}):
        sub = getattr(config, key, None)
        if sub is not None:
            found[key] = _implementations(sub)
    return found


@contextmanager
def attention_implementation(model: nn.Module, implementation: str) -> Iterator[nn.Module]:
    """Switch every attention module of `model` (vision tower included) to `implementation` while the context is
    open, then back to what each part used before: calibration needs eager attention maps, and switching in place
    keeps one copy of a 7B model in memory instead of loading a second."""
    before = _implementations(model.config)
    model.set_attn_implementation(implementation)
    try:
        yield model
    finally:
        model.set_attn_implementation(before)
