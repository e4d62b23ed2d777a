"""`hipp` end to end on the real 7B architectures on one GPU: every step a user runs, each as the CLI command itself,
timed, with its peak GPU memory.

For each architecture (LLaVA-1.5-7B in the llava-hf layout, Qwen2.5-VL-7B) it writes a random-weight checkpoint in
bf16 safetensors with a processor (`checkpoint7b.py`), then runs `python -m hipp_core.cli` on it in a fresh
HIPP_HOME: calibrate (128 samples), eval (100 questions per POPE category and of ScienceQA = one 400-question plan,
no image-free pass, as a GRPO reward scores a plan), one short GRPO iteration, a uniform plan at 0.25, LoRA
recovery (20 steps at batch 4) and the export of that plan in both formats. Tuning data is ShapesWorld
(`--shapesworld`): with random weights only speed and memory mean anything, and the data does not change them
(the scenes become the image token counts of 336-px photos; see `checkpoint7b.py`).

Each step records its wall time (the whole command: process start, model load, work) and the command's own peaks,
which it prints at exit when `$HIPP_REPORT_PEAK_MEMORY` is 1 (`hipp_core/peak_memory.py`): torch's peak allocated
GPU memory and the peak resident host memory. Seconds per 400-question plan come from the eval step's own scoring
time (`EvalResult.seconds`, the model load excluded). The targets of the issue "Real models on real hardware" are
checked per architecture (they are stated for LLaVA-1.5-7B on one H100/H200).

The report is rewritten in `--out` after every step; a rerun with the same `--out` skips the steps recorded there
while their checkpoint is still on disk (one GPU call may end mid-way), and architectures it finished. Finished
architectures leave only their report and plan store: checkpoints, exports and recovered models are deleted unless
`--keep` (while one runs, its checkpoint, recovered model and one export at a time: by parameter count about 36 GB
for LLaVA and 43 GB for Qwen). With `--save` the report goes to
benchmarks/results/gpu_pipeline.json, keeping architectures measured earlier on the same kind of GPU, so `--archs`
can take them one GPU call at a time.

`--tiny` runs every step on the CPU with `arch7b`'s small stand-ins and smaller settings: a dry run of this script and
of the CLI on both families whose numbers mean nothing (never saved to benchmarks/results).

    python benchmarks/gpu_pipeline.py [--tiny] [--out DIR] [--archs llava-1.5-7b,qwen2.5-vl-7b] [--save] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import arch7b
from results_io import load, write

from hipp_core.data.build import default_root, is_built
from hipp_core.models.loading import checkpoint_dtype
from hipp_core.peak_memory import ENV as PEAK_ENV
from hipp_core.peak_memory import parse_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = (
    "write_checkpoint",
    "calibrate",
    "eval",
    "train_policy",
    "plan_uniform",
    "recover",
    "export_exact",
    "export_stock",
)
GIB = 2**30
QUESTIONS_PER_PLAN = 400  # a GRPO reward's dev subset: 3 POPE categories × 100 + 100 ScienceQA
TARGETS = {  # issue "Real models on real hardware", on one H100/H200 with LLaVA-1.5-7B
    "seconds_per_400_question_plan": 8.0,
    "calibration_128_samples_seconds": 60.0,
    "peak_gpu_memory_gib": 75.0,
}


@dataclass(frozen=True)
class Sizes:
    """How much work each step does: the GPU run's, or `--tiny`'s (small enough for seconds on a CPU)."""

    samples: int  # calibration questions
    eval_limit: int  # questions per POPE category and of ScienceQA
    policy_limit: int  # the same, behind each GRPO reward
    recover_steps: int
    recover_batch: int
    recover_limit: int  # test questions of recovery's before/after evaluation
    sparsity: float = 0.25


FULL = Sizes(samples=128, eval_limit=100, policy_limit=25, recover_steps=20, recover_batch=4, recover_limit=25)
TINY = Sizes(samples=8, eval_limit=4, policy_limit=2, recover_steps=2, recover_batch=2, recover_limit=2)


@dataclass(frozen=True)
class Paths:
    """Where one architecture's files live under `--out`."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def home(self) -> Path:
        return self.root / "hipp_home"

    @property
    def plan(self) -> Path:
        return self.root / "uniform.json"

    def export(self, fmt: str) -> Path:
        return self.root / f"export-{fmt}"


def commands(arch: str, paths: Paths, sizes: Sizes, tiny: bool, grad_checkpointing: bool) -> dict[str, list[str]]:
    """Each step's command line. Batch sizes are the CLI's defaults except recovery's (the issue's batch 4)."""
    hipp = [sys.executable, "-m", "hipp_core.cli"]
    ckpt = str(paths.checkpoint)
    recover = ["--steps", str(sizes.recover_steps), "--batch-size", str(sizes.recover_batch)]
    recover += ["--limit", str(sizes.recover_limit), "--json"]
    recover += ["--grad-checkpointing"] if grad_checkpointing else []
    export = [*hipp, "export", ckpt, "--plan", str(paths.plan), "--overwrite", "--format"]
    return {
        "write_checkpoint": [sys.executable, str(HERE / "checkpoint7b.py"), arch, ckpt, *(["--tiny"] if tiny else [])],
        "calibrate": [*hipp, "calibrate", ckpt, "--samples", str(sizes.samples), "--shapesworld", "--json"],
        "eval": [*hipp, "eval", ckpt, "--limit", str(sizes.eval_limit), "--no-image-free", "--json"],
        "train_policy": [
            *hipp,
            "train-policy",
            ckpt,
            *("--iters", "1", "--group-size", "2", "--prefs", "2", "--limit", str(sizes.policy_limit)),
            "--shapesworld",
        ],
        "plan_uniform": [
            *hipp,
            *("plan", "baseline", ckpt, "--method", "uniform", "--sparsity", str(sizes.sparsity)),
            *("--shapesworld", "-o", str(paths.plan)),
        ],
        "recover": [*hipp, "recover", ckpt, "--plan", str(paths.plan), *recover],
        "export_exact": [*export, "exact", "-o", str(paths.export("exact"))],
        "export_stock": [*export, "stock", "-o", str(paths.export("stock"))],
    }


@dataclass
class Finished:
    seconds: float
    returncode: int
    stdout: str
    stderr: str


def run(command: list[str], env: dict[str, str]) -> Finished:
    started = time.perf_counter()
    child = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    return Finished(time.perf_counter() - started, child.returncode, child.stdout, child.stderr)


def _json_tail(stdout: str) -> dict:
    """The JSON object a command printed last (`--json` output; checkpoint7b's one line)."""
    start = stdout.find("{")
    return json.loads(stdout[start:]) if start >= 0 else {}


def _gib(value: int | None) -> float | None:
    return None if value is None else round(value / GIB, 2)


def _disk_gib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / GIB, 3)


def step_details(step: str, done: Finished, paths: Paths) -> dict:
    """What a finished step measured besides time and memory, read from its output or its files."""
    if step == "write_checkpoint":
        written = _json_tail(done.stdout)
        size = written.pop("size_on_disk_bytes")
        return {k: v for k, v in written.items() if k != "path"} | {"size_on_disk_gib": round(size / GIB, 3)}
    if step == "calibrate":
        return {"samples": _json_tail(done.stdout).get("samples")}
    if step == "eval":
        result = _json_tail(done.stdout)
        questions, seconds = result["questions"], result["seconds"]
        return {
            "questions": questions,
            "scoring_seconds": round(seconds, 3),
            "questions_per_second": round(questions / seconds, 2),
            "seconds_per_400_question_plan": round(seconds / questions * QUESTIONS_PER_PLAN, 2),
        }
    if step == "plan_uniform":
        return {"sparsity_achieved": round(json.loads(paths.plan.read_text())["achieved"], 4)}
    if step == "recover":
        result = _json_tail(done.stdout)
        return {"train_seconds": round(result["seconds"], 2), "steps": result["steps"]}
    if step.startswith("export_"):
        target = paths.export(step.removeprefix("export_"))
        return {"size_on_disk_gib": _disk_gib(target), "dtype": str(checkpoint_dtype(target)).removeprefix("torch.")}
    return {}


def record(step: str, done: Finished, paths: Paths) -> dict:
    peak = parse_report(done.stderr) or {}
    row = {
        "seconds": round(done.seconds, 2),
        "returncode": done.returncode,
        "peak_gpu_gib": _gib(peak.get("cuda_allocated_bytes")),
        "peak_gpu_reserved_gib": _gib(peak.get("cuda_reserved_bytes")),
        "peak_host_rss_gib": _gib(peak.get("rss_bytes")),
    }
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return row | {"error": "\n".join(lines[-15:])}
    return row | step_details(step, done, paths)


def targets(steps: dict[str, dict]) -> dict:
    """Each target beside what was measured; `met` is None where the step did not run or measured nothing. Peak
    memory is met only once every step ran within the limit, and missed as soon as one step went over it."""
    plan = steps.get("eval", {}).get("seconds_per_400_question_plan")
    calibrate = steps.get("calibrate", {})
    calibration = calibrate.get("seconds") if calibrate.get("samples") == FULL.samples else None
    peaks = {name: s["peak_gpu_gib"] for name, s in steps.items() if s.get("peak_gpu_gib") is not None}
    measured = {
        "seconds_per_400_question_plan": plan,
        "calibration_128_samples_seconds": calibration,  # the whole command: start, model load, calibration
        "peak_gpu_memory_gib": max(peaks.values()) if peaks else None,
    }
    out = {}
    for name, limit in TARGETS.items():
        value = measured[name]
        out[name] = {"limit": limit, "measured": value, "met": None if value is None else value <= limit}
    memory = out["peak_gpu_memory_gib"]
    if peaks:
        memory["step"] = max(peaks, key=peaks.get)
        if memory["met"] and not all(steps.get(s, {}).get("returncode") == 0 for s in STEPS):
            memory["met"] = None  # a step still to run may go over
    return out


def child_env(paths: Paths) -> dict[str, str]:
    env = {**os.environ, PEAK_ENV: "1", "HIPP_HOME": str(paths.home), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


class Report:
    """The report in `--out`, rewritten (atomically) after every step. Architectures may run in threads (`--jobs`),
    so each works on its own entry and publishes a copy under a lock."""

    def __init__(self, path: Path, fresh: dict) -> None:
        self.path, self.lock = path, threading.Lock()
        old = json.loads(path.read_text()) if path.exists() else None
        same = old is not None and all(old.get(k) == fresh[k] for k in ("tiny", "settings"))
        self.data = old if same else fresh  # other settings: their steps are not these

    def entry(self, arch: str) -> dict:
        with self.lock:
            return json.loads(json.dumps(self.data["archs"].get(arch, {"steps": {}})))

    def publish(self, arch: str, entry: dict, hardware: dict | None = None) -> None:
        with self.lock:
            self.data["archs"][arch] = json.loads(json.dumps(entry))
            self.data["hardware"] = hardware or self.data["hardware"]
            self.write()

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.path)


def run_arch(arch: str, args: argparse.Namespace, report: Report) -> bool:
    """Run the steps of `arch` that the report does not hold yet; True when all of them succeeded."""
    paths = Paths(args.out / arch)
    entry = report.entry(arch)
    steps: dict[str, dict] = entry["steps"]
    if all(steps.get(s, {}).get("returncode") == 0 for s in STEPS):
        print(f"{arch}: every step recorded in {args.out}; skipped", file=sys.stderr)
        return True
    if not paths.checkpoint.is_dir():  # a fresh machine: what the recorded steps made is gone, so start over
        steps.clear()
        shutil.rmtree(paths.home, ignore_errors=True)
    paths.root.mkdir(parents=True, exist_ok=True)
    lines = commands(arch, paths, args.sizes, args.tiny, args.grad_checkpointing)
    env = child_env(paths)
    for step in STEPS:
        if steps.get(step, {}).get("returncode") == 0:
            continue
        print(f"{arch}: {step} …", file=sys.stderr, flush=True)
        done = run(lines[step], env)
        steps[step] = record(step, done, paths) | {"command": _shown(lines[step], args.out)}
        print(f"{arch}: {step} {_summary(steps[step])}", file=sys.stderr, flush=True)
        if step.startswith("export_") and done.returncode == 0 and not args.keep:
            shutil.rmtree(paths.export(step.removeprefix("export_")), ignore_errors=True)
        entry["targets"] = targets(steps)
        report.publish(arch, entry, steps[step].pop("hardware", None))
        if done.returncode != 0:  # every later step needs this one's result
            return False
    if not args.keep:  # the report and the plan store stay; the tens of GB of weights go
        for folder in (paths.checkpoint, paths.home / "recovered", paths.home / "artifacts"):
            shutil.rmtree(folder, ignore_errors=True)
    return True


def _shown(command: list[str], out: Path) -> str:
    """The command as a user would type it (`hipp` for the CLI module), paths relative to --out."""
    text = " ".join(command[3:] if command[1:3] == ["-m", "hipp_core.cli"] else command[1:])
    prefix = "hipp " if command[1:3] == ["-m", "hipp_core.cli"] else "python "
    return prefix + text.replace(str(out) + os.sep, "").replace(str(HERE) + os.sep, "benchmarks/")


def _summary(row: dict) -> str:
    if row["returncode"] != 0:
        return f"FAILED (exit {row['returncode']}) after {row['seconds']} s:\n{row['error']}"
    gpu = f", peak GPU {row['peak_gpu_gib']} GiB" if row["peak_gpu_gib"] is not None else ""
    return f"{row['seconds']} s{gpu}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(arch7b.ARCHS), help="Comma-separated: " + ", ".join(arch7b.ARCHS))
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "hipp-gpu-pipeline",
        help="Working folder (checkpoints, plan stores) and its report gpu_pipeline.json; needs ~45 GB free.",
    )
    parser.add_argument("--tiny", action="store_true", help="Dry run on CPU with small stand-ins, in seconds.")
    parser.add_argument("--save", action="store_true", help="Write benchmarks/results/gpu_pipeline.json.")
    parser.add_argument("--keep", action="store_true", help="Keep checkpoints and exports of finished steps.")
    parser.add_argument(
        "--no-grad-checkpointing",
        dest="grad_checkpointing",
        action="store_false",
        help="Recover without gradient checkpointing (faster, more memory).",
    )
    parser.add_argument("--jobs", type=int, default=1, help="Architectures at a time (only with --tiny: one GPU).")
    args = parser.parse_args(argv)
    if args.jobs > 1 and not args.tiny:
        parser.error("--jobs runs architectures side by side, which only --tiny may: on one GPU they would share it")
    if args.tiny and args.save:
        parser.error("--tiny numbers mean nothing; they are never saved to benchmarks/results (see --out)")
    args.archs = arch7b.parse_archs(parser, args.archs)
    args.out = args.out.resolve()
    args.sizes = TINY if args.tiny else FULL
    return args


def new_report(args: argparse.Namespace) -> dict:
    return {
        "what": "hipp CLI end to end on random weights of the 7B architectures"
        + (" (--tiny stand-ins on the CPU: numbers mean nothing)" if args.tiny else ""),
        "tiny": args.tiny,
        "settings": vars(args.sizes) | {"grad_checkpointing": args.grad_checkpointing, "data": "ShapesWorld"},
        "targets_apply_to": "llava-1.5-7b on one H100/H200 (issue: Real models on real hardware)",
        "hardware": None,
        "archs": {},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out / "gpu_pipeline.json", new_report(args))
    if not is_built(default_root()):  # before any step is timed, and before architectures share the cache (--jobs)
        prepare = run([sys.executable, "-m", "hipp_core.cli", "data", "build"], child_env(Paths(args.out)))
        if prepare.returncode != 0:
            raise SystemExit(f"`hipp data build` failed:\n{prepare.stderr[-3000:]}")
    with ThreadPoolExecutor(args.jobs) as pool:
        ok = list(pool.map(lambda arch: run_arch(arch, args, report), args.archs))
    final = report.data
    report.write()
    if args.save:
        saved = load("gpu_pipeline")
        device = (final["hardware"] or {}).get("device")
        if saved and (saved.get("hardware") or {}).get("device") == device and saved["settings"] == final["settings"]:
            final = final | {"archs": saved["archs"] | final["archs"]}  # one architecture per GPU call adds up
        write("gpu_pipeline.json", json.dumps(final, indent=2) + "\n")
    print(json.dumps(final, indent=2))
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
