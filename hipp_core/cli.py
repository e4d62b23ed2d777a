"""`hipp`: the command line, a thin wrapper over `hipp_core.api`.

User errors (`HippError`) print as one line on stderr and exit 2; progress bars go to stderr so that
`--json` output on stdout stays machine-readable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

from hipp_core.config import quiet_libraries, set_threads
from hipp_core.errors import USER_ERRORS, HippError

app = typer.Typer(
    help="HiPP-Prune: preference-conditioned structured pruning for vision-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="The embedded ShapesWorld benchmark.", no_args_is_help=True)
zoo_app = typer.Typer(
    help="The embedded models (tiny LLaVA and Qwen2.5-VL trained on ShapesWorld).", no_args_is_help=True
)
plan_app = typer.Typer(help="Make pruning blueprints.", no_args_is_help=True)
store_app = typer.Typer(help="The DuckDB plan store ($HIPP_HOME/plans.duckdb).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(zoo_app, name="zoo")
app.add_typer(store_app, name="store")
app.add_typer(plan_app, name="plan")

out = Console()
err = Console(stderr=True)

ModelArg = Annotated[
    str, typer.Argument(help="`embedded` (= embedded:llava), `embedded:qwen2_5_vl`, or a local checkpoint directory.")
]


BackendOpt = Annotated[str, typer.Option(help="Evaluator backend: local (this process) or ray.")]
AddressOpt = Annotated[str | None, typer.Option(help="Ray cluster: local (start one), auto, or ray://host:port.")]
WorkersOpt = Annotated[int | None, typer.Option(help="Ray workers (default: the cluster's GPUs, else its CPUs).")]


def _backend_options(address: str | None, num_workers: int | None) -> dict:
    return {"address": address, "num_workers": num_workers}


@contextmanager
def progress_bar() -> Callable:
    """A rich progress bar on stderr, one task per stage name; yields the callback the core expects."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int, metrics: dict | None = None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, info="")
            info = "  ".join(f"{k}={v:.3f}" for k, v in (metrics or {}).items())
            bar.update(tasks[stage], completed=done, total=total, info=info)

        yield update


def run(fn: Callable[[], None]) -> None:
    try:
        fn()
    except USER_ERRORS as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@data_app.command("build")
def data_build(
    force: Annotated[bool, typer.Option(help="Rebuild even if a complete build exists.")] = False,
    root: Annotated[Path | None, typer.Option(help="Where to write (default $HIPP_CACHE/data/shapesworld-v1).")] = None,
) -> None:
    """Write ShapesPOPE and ShapesSQA (real POPE / ScienceQA formats) for train, calib, dev and test."""
    from hipp_core import api

    def body() -> None:
        with progress_bar() as cb:
            path = api.ensure_data(cb, root, force)
        manifest = json.loads((path / "manifest.json").read_text())
        table = Table("part", "images / problems", "questions per category")
        for name, stats in manifest["stats"].items():
            table.add_row(
                name, str(stats.get("images", stats.get("problems"))), str(stats.get("questions_per_category", ""))
            )
        out.print(table)
        out.print(f"dataset at {path}")

    run(body)


@zoo_app.command("build")
def zoo_build(
    arch: Annotated[str, typer.Option(help="llava, qwen2_5_vl or all.")] = "all",
    retrain: Annotated[
        bool, typer.Option(help="Train again from scratch into $HIPP_CACHE/zoo (resumes if killed).")
    ] = False,
    steps: Annotated[
        int | None, typer.Option(help="Decoder steps after the letter drill (default: the shipped recipe's).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default $HIPP_THREADS or cores - 1).")] = None,
) -> None:
    """Make sure the embedded models exist: the shipped checkpoints, or a reproducible retrain."""
    from hipp_core import api

    def body() -> None:
        with progress_bar() as cb:
            rows = api.zoo_build(arch, retrain, steps, threads, cb)
        for row in rows:
            if row.trained_now:
                out.print(f"{row.arch}: trained in {row.info['seconds_this_run']:.0f} s → {row.path}")
            else:
                out.print(
                    f"{row.arch}: shipped checkpoint at {row.path} ({row.info.get('parameters', '?')} parameters)"
                )

    run(body)


@zoo_app.command("status")
def zoo_status() -> None:
    """Where each embedded model is loaded from and how it was trained."""
    from hipp_core import api

    table = Table("arch", "in use", "parameters", "decoder steps", "trained seconds")
    for row in api.zoo_status():
        table.add_row(
            row.arch,
            str(row.path or "missing"),
            str(row.info.get("parameters", "")),
            str(row.info.get("train_config", {}).get("steps", "")),
            str(row.info.get("seconds_this_run", "")),
        )
    out.print(table)


def _pope_table(title: str, metrics: dict, baseline: dict) -> Table:
    table = Table(
        Column("category", no_wrap=True, min_width=11),
        "n",
        "balanced acc",
        "accuracy",
        "precision",
        "recall",
        "F1",
        "yes-ratio",
        "image-free bal. acc",
        title=title,
    )
    for cat, m in metrics.items():
        free = baseline.get(cat)
        table.add_row(
            cat,
            str(m.n),
            f"{m.balanced_accuracy:.3f}",
            f"{m.accuracy:.3f}",
            f"{m.precision:.3f}",
            f"{m.recall:.3f}",
            f"{m.f1:.3f}",
            f"{m.yes_ratio:.3f}",
            f"{free.balanced_accuracy:.3f}" if free else "-",
        )
    return table


@app.command("eval")
def eval_cmd(
    model: ModelArg,
    bench: Annotated[str, typer.Option(help="pope, sqa or all.")] = "all",
    split: Annotated[
        str, typer.Option(help="ShapesWorld split (train, calib, dev, test) or ScienceQA split.")
    ] = "test",
    limit: Annotated[int | None, typer.Option(help="First N questions per POPE category and of ScienceQA.")] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Decode and parse answers instead of comparing logits.")
    ] = False,
    image_free: Annotated[
        bool, typer.Option(help="Also score every question over a blank image (prior baseline).")
    ] = True,
    pope_dir: Annotated[
        Path | None,
        typer.Option(
            help="Real POPE: a folder of *_pope_<category>.json files, or one question file "
            "(official, or LLaVA's llava_pope_test.jsonl with --pope-labels)."
        ),
    ] = None,
    pope_images: Annotated[
        Path | None, typer.Option(help="Image folder for --pope-dir (default: images/ beside it).")
    ] = None,
    pope_labels: Annotated[
        Path | None,
        typer.Option(help="Folder of official coco_pope_<category>.json files labelling LLaVA's question file."),
    ] = None,
    sqa_dir: Annotated[
        Path | None, typer.Option(help="Real ScienceQA root (problems.json, pid_splits.json, images/).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Questions per forward pass.")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Evaluate a dense model on POPE (per category) and ScienceQA, with the image-free baseline."""
    from hipp_core.api import evaluate_model

    def body() -> None:
        if batch_size < 1:
            raise HippError(f"--batch-size must be at least 1, got {batch_size}")
        with progress_bar() as cb:
            result = evaluate_model(
                model,
                bench,
                split,
                limit,
                "generate" if generate else "logits",
                image_free,
                pope_dir,
                sqa_dir,
                pope_images,
                pope_labels,
                batch_size,
                cb,
            )
        if as_json:
            sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
            return
        if result.pope:
            out.print(_pope_table(f"POPE ({split}, {result.scoring})", result.pope, result.pope_image_free))
        if result.sqa:
            table = Table(
                "", "n", "accuracy", "with image", "text only", "image-free (with image)", title=f"ScienceQA ({split})"
            )
            free = result.sqa_image_free
            table.add_row(
                "all",
                str(result.sqa.n),
                f"{result.sqa.accuracy:.3f}",
                f"{result.sqa.accuracy_image:.3f}",
                f"{result.sqa.accuracy_text:.3f}",
                f"{free.accuracy_image:.3f}" if free else "-",
            )
            out.print(table)
        origin = "from the plan store cache, first computed" if result.cached else "computed"
        out.print(f"{result.questions} questions, {origin} in {result.seconds:.1f} s (model {result.model_id})")

    run(body)


@app.command("calibrate")
def calibrate_cmd(
    model: ModelArg,
    samples: Annotated[int, typer.Option(help="Calibration questions from the calib split.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Questions per forward pass.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print the features as JSON only, on stdout.")] = False,
) -> None:
    """Per-layer visual sensitivity, activation statistics and unit scores (Wanda-sp, magnitude, SynFlow)."""
    from hipp_core.api import calibrate_model

    def body() -> None:
        with progress_bar() as cb:
            features, cached = calibrate_model(model, samples, batch_size, cb)
        if as_json:
            sys.stdout.write(json.dumps(features.to_json()) + "\n")
            return
        table = Table(
            "layer", "v_attn", "v_flow", "act norm", "SynFlow share", title=f"calibration ({features.samples} samples)"
        )
        for i, row in enumerate(zip(features.v_attn, features.v_flow, features.act_norm, features.synflow_share())):
            table.add_row(str(i), *(f"{x:.3f}" for x in row))
        out.print(table)
        out.print("read from the plan store cache" if cached else "computed and stored")

    run(body)


@plan_app.command("baseline")
def plan_baseline_cmd(
    model: ModelArg,
    method: Annotated[
        str,
        typer.Option(help="uniform, owl, visual, magnitude, random (best of N on dev) or torch-pruning (the peer)."),
    ],
    sparsity: Annotated[float, typer.Option(help="Fraction of decoder-layer parameters to remove, in (0, 0.9).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the blueprint JSON.")],
    n_random: Annotated[int, typer.Option(help="Candidates for --method random.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the random candidates.")] = 0,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    num_workers: WorkersOpt = None,
) -> None:
    """A heuristic blueprint at a given sparsity (what the policy is compared against)."""
    from hipp_core.api import plan_baseline

    def body() -> None:
        with progress_bar() as cb:
            blueprint = plan_baseline(
                model,
                method,
                sparsity,
                n_random=n_random,
                seed=seed,
                progress=cb,
                backend=backend,
                backend_options=_backend_options(address, num_workers),
            )
        _write_plan(blueprint, output)
        out.print(
            f"{method}: plan {blueprint.plan_id}, {blueprint.achieved:.2%} of decoder parameters removed "
            f"(asked {sparsity:.2%}) → {output}"
        )

    run(body)


def _write_plan(blueprint, output: Path) -> None:
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(blueprint.to_json(), indent=1))
    tmp.replace(output)


def _parse_preference(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise HippError(
            f"--pref must be three comma-separated numbers U,R,C such as 0.2,0.7,0.1, got {text!r}"
        ) from None


@app.command("train-policy")
def train_policy_cmd(
    model: ModelArg,
    iters: Annotated[int | None, typer.Option(help="GRPO iterations (total; a rerun continues up to it).")] = None,
    group_size: Annotated[int | None, typer.Option(help="Plans sampled per preference (the GRPO group).")] = None,
    prefs: Annotated[int, typer.Option(help="Preferences per iteration; half of them run at a fixed budget.")] = 4,
    resume: Annotated[bool, typer.Option(help="Continue the last checkpoint of the same run if there is one.")] = True,
    reward: Annotated[str, typer.Option(help="linear or tchebycheff (augmented).")] = "linear",
    seed: Annotated[int, typer.Option(help="Seed of preferences, plans and the network's initialisation.")] = 0,
    limit: Annotated[
        int, typer.Option(help="Dev questions per POPE category and of ScienceQA behind each reward.")
    ] = 100,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    num_workers: WorkersOpt = None,
) -> None:
    """Train the preference-conditioned policy with plan-level GRPO on the dev split (resumable)."""
    from hipp_core.api import GRPOConfig, train_policy

    def body() -> None:
        if limit < 1:
            raise HippError(f"--limit must be a positive number of questions, got {limit}")
        config = GRPOConfig(reward=reward, seed=seed, limit=limit, prefs_per_iter=prefs, fixed_budget_groups=prefs // 2)
        options = _backend_options(address, num_workers)
        with progress_bar() as cb:
            record = train_policy(model, iters, group_size, resume, config, backend, options, progress=cb)
        last = record.curve[-1] if record.curve else {}
        out.print(
            f"policy {record.policy_id}: {last.get('iter', 0)} iterations, {last.get('evaluations', 0)} distinct plans "
            f"evaluated, {last.get('gated', 0)} gated ({last.get('false_gates', 0)} of {last.get('audited', 0)} "
            f"audited were false gates), last mean reward {last.get('reward_mean', float('nan')):.3f}, "
            f"front {last.get('front_size', 0)} plans"
        )

    run(body)


@app.command("blueprint")
def blueprint_cmd(
    model: ModelArg,
    pref: Annotated[str, typer.Option("--pref", help="Preference U,R,C: utility, robustness, compression.")],
    sparsity: Annotated[float | None, typer.Option(help="Fix the budget (matched sparsity), in (0, 0.9).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the blueprint JSON here.")] = None,
) -> None:
    """The trained policy's blueprint for a preference, in milliseconds."""
    from hipp_core.api import planner

    def body() -> None:
        preference = _parse_preference(pref)
        plans = planner(model)
        t0 = time.perf_counter()
        blueprint = plans.blueprint(preference, sparsity)
        ms = (time.perf_counter() - t0) * 1000
        if output is None:
            sys.stdout.write(json.dumps(blueprint.to_json(), indent=1) + "\n")
            return
        _write_plan(blueprint, output)
        out.print(
            f"plan {blueprint.plan_id}: {blueprint.achieved:.2%} of decoder parameters removed, per layer "
            f"{', '.join(f'{x:.2f}' for x in blueprint.sparsities)} ({ms:.1f} ms) → {output}"
        )

    run(body)


@app.command("export")
def export_cmd(
    model: ModelArg,
    plan: Annotated[Path, typer.Option("--plan", help="Blueprint JSON (from `hipp plan ...` or the dashboard).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to create for the export.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export at --output.")] = False,
) -> None:
    """Write the pruned model as a checkpoint that plain transformers loads (trust_remote_code=True)."""
    from hipp_core import api

    def body() -> None:
        blueprint = api.read_plan(plan)
        path = api.export_plan(model, blueprint, output, overwrite)
        out.print(f"exported {blueprint.plan_id} ({blueprint.achieved:.1%} of decoder parameters removed) → {path}")

    run(body)


@store_app.command("export")
def store_export(directory: Annotated[Path, typer.Argument(help="New or empty folder for the Parquet files.")]) -> None:
    """Write models, plans and evaluations as Parquet files, for sharing and backup."""
    from hipp_core import api

    def body() -> None:
        if directory.exists() and any(directory.iterdir()):
            raise HippError(f"{directory} is not empty; export into a new or empty folder")
        for path in api.open_store().export_parquet(directory):
            out.print(f"wrote {path}")

    run(body)


@store_app.command("import")
def store_import(directory: Annotated[Path, typer.Argument(help="A folder written by `hipp store export`.")]) -> None:
    """Add the plans and evaluations of an export that this store lacks; existing rows are never replaced."""
    from hipp_core import api

    def body() -> None:
        if not directory.is_dir():
            raise HippError(f"{directory} is not a folder; pass one written by `hipp store export`")
        summary = api.open_store().import_parquet(directory)
        out.print(
            f"added {summary.models_added} models, {summary.plans_added} plans, "
            f"{summary.evaluations_added} evaluations; skipped {summary.skipped} already present"
        )

    run(body)


jobs_app = typer.Typer(
    help="Background jobs started from the dashboard (state in the plan store).", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option(help="Newest N jobs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Jobs newest first, with progress; jobs whose worker died are marked failed first."""
    from hipp_core import api

    def body() -> None:
        if limit < 1:
            raise HippError(f"--limit must be at least 1, got {limit}")
        store = api.open_store()
        store.reap_dead_jobs()
        jobs = store.list_jobs(limit=limit)
        if as_json:
            rows = [
                {k: getattr(j, k) for k in ("job_id", "kind", "status", "progress", "message", "error", "params")}
                for j in jobs
            ]
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        table = Table("job", "kind", "status", "progress", "message", "created (UTC)")
        for j in jobs:
            message = j.error if j.status == "failed" else j.message
            table.add_row(j.job_id, j.kind, j.status, f"{j.progress:.0%}", message, f"{j.created_at:%Y-%m-%d %H:%M:%S}")
        out.print(table if jobs else "no jobs")

    run(body)


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="The id `hipp jobs list` shows.")]) -> None:
    """Ask a job to stop: a queued one is cancelled at once, a running one stops at its next progress report."""
    from hipp_core import api

    def body() -> None:
        job = api.open_store().request_cancel(job_id)
        if job.status == "running":
            out.print(f"cancel requested; job {job_id} stops at its next progress report")
        else:
            out.print(f"job {job_id} is {job.status}")

    run(body)


@app.command("recover")
def recover_cmd(
    model: ModelArg,
    plan: Annotated[Path, typer.Option("--plan", help="Blueprint JSON (from `hipp plan ...` or `hipp blueprint`).")],
    steps: Annotated[int, typer.Option(help="LoRA training steps (at least 1).")] = 300,
    data: Annotated[
        Path | None,
        typer.Option(
            help="LLaVA-format instruction file: a JSON list of {id, image, conversations: [{from: human, value: "
            "'<image>\\n...'}, {from: gpt, value}]}, images relative to the file (default: ShapesWorld train)."
        ),
    ] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank, 1 to 256.")] = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate (> 0).")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed of the data order and the adapters' initialisation.")] = 0,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate on the first N test questions per POPE category and of ScienceQA.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """LoRA-recover a pruned model (language decoder only), merge, store it as an export, and compare test scores
    before and after. Rerunning after a kill resumes; the same settings again return the stored model."""
    from hipp_core import api

    def body() -> None:
        blueprint = api.read_plan(plan)
        with progress_bar() as cb:
            result = api.recover(model, blueprint, steps, rank, data, seed, lr, progress=cb, limit=limit)
        if as_json:
            report = {"artifact_dir": str(result.artifact_dir), "seconds": result.seconds, "steps": result.steps}
            report |= {"cached": result.cached, "before": result.before.to_json(), "after": result.after.to_json()}
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            return
        table = Table("", "pruned", "recovered", title=f"test split, plan {blueprint.plan_id}")
        for cat, m in result.before.pope.items():
            after = result.after.pope[cat].balanced_accuracy
            table.add_row(f"POPE {cat} balanced acc", f"{m.balanced_accuracy:.3f}", f"{after:.3f}")
        if result.before.sqa and result.after.sqa:
            table.add_row("ScienceQA accuracy", f"{result.before.sqa.accuracy:.3f}", f"{result.after.sqa.accuracy:.3f}")
        out.print(table)
        origin = "read from the plan store" if result.cached else "trained"
        out.print(f"{origin}: {result.steps} steps in {result.seconds:.0f} s → {result.artifact_dir}")

    run(body)


@app.command("pipeline")
def pipeline_cmd(
    model: ModelArg,
    pref: Annotated[str, typer.Option("--pref", help="Preference U,R,C: utility, robustness, compression.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to create for the exported model.")],
    sparsity: Annotated[float | None, typer.Option(help="Fix the budget (matched sparsity), in (0, 0.9).")] = None,
    steps: Annotated[int, typer.Option(help="LoRA recovery steps.")] = 300,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    iters: Annotated[int | None, typer.Option(help="GRPO iterations if the model has no trained policy yet.")] = None,
    limit: Annotated[int | None, typer.Option(help="Test questions per set (default: all).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export at --output.")] = False,
) -> None:
    """calibrate → blueprint → materialize → recover → evaluate → export, reusing everything already computed."""
    from hipp_core.api import pipeline

    def body() -> None:
        preference = _parse_preference(pref)
        with progress_bar() as cb:
            result = pipeline(model, preference, sparsity, output, steps, rank, iters, limit, overwrite, progress=cb)
        stages = Table("stage", "", "seconds", title="pipeline")
        for name, reused, seconds in result.stages:
            stages.add_row(name, "reused" if reused else "computed", f"{seconds:.1f}")
        out.print(stages)
        bp, rec = result.blueprint, result.recovery
        table = Table("model", "removed", "POPE rand", "POPE pop", "POPE adv", "SQA", title="test (balanced accuracy)")
        for name, r, removed in (
            ("dense", result.dense, "0%"),
            ("pruned", rec.before, f"{bp.achieved:.1%}"),
            ("recovered", rec.after, f"{bp.achieved:.1%}"),
        ):
            pope = [f"{r.pope[c].balanced_accuracy:.3f}" for c in ("random", "popular", "adversarial")]
            table.add_row(name, removed, *pope, f"{r.sqa.accuracy:.3f}")
        out.print(table)
        out.print(
            f"plan {bp.plan_id} (preference {', '.join(f'{x:.2f}' for x in bp.preference)}) → {result.export_dir}"
        )

    run(body)


def prepare_process() -> None:
    """What a `hipp` process sets up before its command runs (tests that run commands in process do the same)."""
    quiet_libraries()
    set_threads()


def main() -> None:
    prepare_process()
    app()


if __name__ == "__main__":
    main()
