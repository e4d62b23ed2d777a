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
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

from hipp_core.config import quiet_libraries, report_peak_memory_if_asked, set_threads
from hipp_core.errors import USER_ERRORS, HippError

app = typer.Typer(
    help="HiPP-Prune: preference-conditioned structured pruning for vision-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Benchmark data: the embedded ShapesWorld, and POPE-format dev sets built from your annotations.",
    no_args_is_help=True,
)
zoo_app = typer.Typer(
    help="The embedded models (tiny LLaVA and Qwen2.5-VL trained on ShapesWorld).", no_args_is_help=True
)
plan_app = typer.Typer(no_args_is_help=True)
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
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="exact: the pruned shapes, loaded with trust_remote_code=True or hipp_core.load_pruned. stock: one "
        "set of sizes for every layer (zero-padded unless the plan keeps equal counts) in a stock config and "
        "class, loaded by plain transformers and inference servers without remote code.",
    ),
]
EqualCountsOpt = Annotated[
    bool,
    typer.Option(
        "--equal-counts",
        help="Keep the same numbers of query heads per KV group, KV groups and MLP channels in every layer, so that "
        "`hipp export --format stock` needs no padding and stock engines load the plan as is. Gives up the "
        "per-layer allocation for that compatibility (and, for Qwen2.5-VL, whose stock attention needs every query "
        "head, attention pruning: the budget then comes from MLP channels).",
    ),
]


DeviceOpt = Annotated[
    str, typer.Option(help="Where the model runs: auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N.")
]
DtypeOpt = Annotated[
    str,
    typer.Option(help="Weights' number format: auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16."),
]


def _settings(device: str, dtype: str) -> dict:
    """The device and dtype options as the API takes them."""
    return {"device": device, "dtype": dtype}


def _backend_options(address: str | None, num_workers: int | None) -> dict:
    return {"address": address, "num_workers": num_workers}


# Which data a command reads. `eval` reads the test files named by the first four; calibration and rewards
# (`calibrate`, `train-policy`, `plan baseline`, `pipeline`) read a dev set and must stay apart from the test files.
PopeDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Real POPE: a folder of *_pope_<category>.json files, or one question file "
        "(official, or LLaVA's llava_pope_test.jsonl with --pope-labels)."
    ),
]
PopeImagesOpt = Annotated[Path | None, typer.Option(help="Image folder for --pope-dir (default: images/ beside it).")]
PopeLabelsOpt = Annotated[
    Path | None,
    typer.Option(help="Folder of official coco_pope_<category>.json files labelling LLaVA's question file."),
]
SqaDirOpt = Annotated[Path | None, typer.Option(help="Real ScienceQA root (problems.json, pid_splits.json, images/).")]
SqaImagesOpt = Annotated[Path | None, typer.Option(help="ScienceQA image folder (default: images/ in --sqa-dir).")]
TuneSplitOpt = Annotated[
    str | None, typer.Option("--split", help="ScienceQA split of --sqa-dir to tune on (default val; or minival).")
]
TestPopeOpt = Annotated[
    list[Path] | None,
    typer.Option(
        help="POPE test file or folder you report on (repeatable): tuning data sharing an image with it is refused."
    ),
]
TestSplitOpt = Annotated[
    str | None, typer.Option(help="ScienceQA split of --sqa-dir you report on (default test); kept apart likewise.")
]
TestPopeImagesOpt = Annotated[
    Path | None,
    typer.Option(
        help="Image folder of the --test-pope files, which results are scored on (default: images/ beside them)."
    ),
]
ShapesWorldOpt = Annotated[
    bool,
    typer.Option(
        "--shapesworld",
        help="Tune a local checkpoint on the embedded ShapesWorld (a copy or export of an embedded model).",
    ),
]


def _data(
    pope_dir: Path | None,
    pope_images: Path | None,
    pope_labels: Path | None,
    sqa_dir: Path | None,
    sqa_images: Path | None,
    split: str | None,
    test_pope: list[Path] | None,
    test_split: str | None,
    shapesworld: bool,
    test_pope_images: Path | None = None,
):
    """The options above as the API's `DataSource` (which checks they make sense together)."""
    from hipp_core.api import DataSource

    return DataSource(
        pope=pope_dir,
        pope_images=pope_images,
        pope_labels=pope_labels,
        sqa=sqa_dir,
        sqa_images=sqa_images,
        split=split,
        test_pope=tuple(test_pope or ()),
        test_split=test_split,
        shapesworld=shapesworld,
        test_pope_images=test_pope_images,
    )


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
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@data_app.command("build")
def data_build(
    force: Annotated[bool, typer.Option(help="Rebuild even if a complete build exists.")] = False,
    root: Annotated[
        Path | None, typer.Option(help="Where to write (default $HIPP_CACHE/data/shapesworld-v<version>).")
    ] = None,
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


@data_app.command("pope-build")
def data_pope_build(
    instances: Annotated[
        Path,
        typer.Option(
            help="COCO-style instance annotations (images, annotations, categories), e.g. COCO's "
            "annotations/instances_val2014.json."
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write the POPE files into.")],
    exclude: Annotated[
        list[Path] | None,
        typer.Option(help="Test POPE file or folder whose images must not be used (repeatable), e.g. POPE's coco/."),
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Image folder of --instances: checks that every drawn image is there.")
    ] = None,
    images_count: Annotated[int, typer.Option(help="Images to draw (POPE: 500, i.e. 3000 questions a file).")] = 500,
    objects_per_image: Annotated[int, typer.Option(help="Yes (and no) questions per image (POPE: 3).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the image draw and the random negatives.")] = 0,
    prefix: Annotated[str, typer.Option(help="Files are <prefix>_pope_<random|popular|adversarial>.json.")] = "dev",
) -> None:
    """Build a POPE-format dev set with POPE's own recipe (random / popular / adversarial negatives) on images
    outside your test files: the data to calibrate and train the policy on for a real model (`--pope-dir`)."""
    from hipp_core.api import PopeBuildConfig, build_pope

    def body() -> None:
        config = PopeBuildConfig(images_count, objects_per_image, seed, prefix)
        result = build_pope(instances, output, config, tuple(exclude or ()), images)
        questions = 2 * config.objects_per_image * len(result.images)
        out.print(
            f"{len(result.images)} images drawn from {result.eligible} eligible ({result.excluded} skipped as test "
            f"images), {questions} questions per file, half yes:"
        )
        for strategy, path in result.files.items():
            out.print(f"  {strategy}: {path}")

    run(body)


@zoo_app.command("build")
def zoo_build(
    arch: Annotated[str, typer.Option(help="llava, qwen2_5_vl or all.")] = "all",
    retrain: Annotated[
        bool, typer.Option(help="Train again from scratch into $HIPP_CACHE/zoo (resumes if killed).")
    ] = False,
    steps: Annotated[
        int | None,
        typer.Option(help="Decoder steps with images, after the text-only phases (default: the shipped recipe's)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default $HIPP_THREADS or cores - 1).")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Make sure the embedded models exist: the shipped checkpoints, or a reproducible retrain (on a GPU when one is
    visible: the same recipe, in float32)."""
    from hipp_core import api

    def body() -> None:
        with progress_bar() as cb:
            rows = api.zoo_build(arch, retrain, steps, threads, cb, device)
        for row in rows:
            if row.trained_now:
                total, now = row.train_seconds, row.info["seconds_this_run"]
                resumed = f" ({now:.0f} s in this run, which resumed a checkpoint)" if total > now + 1 else ""
                where = row.info.get("device", "cpu")
                out.print(f"{row.arch}: trained in {total:.0f} s on {where}{resumed} → {row.path}")
            else:
                out.print(
                    f"{row.arch}: shipped checkpoint at {row.path} ({row.info.get('parameters', '?')} parameters)"
                )

    run(body)


@zoo_app.command("status")
def zoo_status() -> None:
    """Where each embedded model is loaded from and how it was trained."""
    from hipp_core import api

    table = Table("arch", "in use", "parameters", "decoder steps", "trained seconds", "threads")
    for row in api.zoo_status():
        table.add_row(
            row.arch,
            str(row.path or "missing"),
            str(row.info.get("parameters", "")),
            str(row.info.get("train_config", {}).get("steps", "")),
            str(row.train_seconds or ""),
            ", ".join(map(str, row.train_threads)),
        )
    out.print(table)


def _named_folders(pairs: list[str] | None) -> dict[str, Path]:
    """`--data NAME=DIR` options as {name: folder}."""
    folders = {}
    for pair in pairs or []:
        name, eq, folder = pair.partition("=")
        if not eq or not name.strip() or not folder.strip():
            raise HippError(f"--data takes NAME=DIR (e.g. mme=/data/MME), got {pair!r}")
        folders[name.strip()] = Path(folder.strip()).expanduser()
    return folders


@app.command("benchmarks")
def benchmarks_cmd() -> None:
    """The benchmarks `hipp eval --bench` knows, and which of them ShapesWorld has built in."""
    from hipp_core import api

    table = Table("name", "built in", "what it measures")
    for bench in api.list_benchmarks():
        table.add_row(bench.name, "yes" if bench.embedded else "--data " + bench.name + "=DIR", bench.help)
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


def _print_result(result, title: str, model: str) -> None:
    """The tables of `hipp eval` and `hipp score`: POPE per category, ScienceQA, then where the numbers came from."""
    scoring = result.scoring + (f", {result.parser} parser" if result.parser else "")
    if result.pope:
        out.print(_pope_table(f"POPE ({title}, {scoring})", result.pope, result.pope_image_free))
    if result.sqa:
        table = Table(
            "",
            "n",
            "correct",
            "accuracy",
            "with image",
            "text only",
            "image-free (with image)",
            title=f"ScienceQA ({title}, {scoring})",
        )
        free = result.sqa_image_free
        table.add_row(
            "all",
            str(result.sqa.n),
            str(round(result.sqa.accuracy * result.sqa.n)),
            f"{result.sqa.accuracy:.3f}",
            f"{result.sqa.accuracy_image:.3f} ({result.sqa.n_image})",
            f"{result.sqa.accuracy_text:.3f} ({result.sqa.n_text})",
            f"{free.accuracy_image:.3f}" if free else "-",
        )
        out.print(table)
    origin = "from the plan store cache, first computed" if result.cached else "computed"
    out.print(f"{result.questions} questions, {origin} in {result.seconds:.1f} s ({model})", soft_wrap=True)


def _print_notices(result) -> None:
    for message in result.notices:
        err.print(f"[yellow]notice:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


ParserOpt = Annotated[
    str,
    typer.Option(
        help="How generated answers are read: official (the rules of POPE's and LLaVA's evaluation scripts, "
        "exactly) or lenient (also 'NO', 'Not', '(B)', option text)."
    ),
]


@app.command("eval")
def eval_cmd(
    model: ModelArg,
    bench: Annotated[
        str,
        typer.Option(
            help="all (the benchmarks ShapesWorld has: pope, sqa) or names joined by commas; see `hipp benchmarks`."
        ),
    ] = "all",
    split: Annotated[
        str, typer.Option(help="ShapesWorld split (train, calib, dev, test) or ScienceQA split.")
    ] = "test",
    limit: Annotated[int | None, typer.Option(help="First N questions per POPE category and of ScienceQA.")] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Decode and parse answers (see --parser) instead of comparing logits.")
    ] = False,
    parser: ParserOpt = "official",
    image_free: Annotated[
        bool, typer.Option(help="Also score every question over a blank image (prior baseline).")
    ] = True,
    pope_dir: PopeDirOpt = None,
    pope_images: PopeImagesOpt = None,
    pope_labels: PopeLabelsOpt = None,
    sqa_dir: SqaDirOpt = None,
    sqa_images: SqaImagesOpt = None,
    data: Annotated[
        list[str] | None,
        typer.Option(help="NAME=DIR: the folder of a benchmark that has no option of its own (e.g. mme=/data/MME)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Questions per forward pass.")] = 32,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", help="Evaluate the model pruned by this blueprint JSON (from `hipp plan ...`)."),
    ] = None,
    physical: Annotated[
        bool,
        typer.Option("--physical", help="With --plan: score a physically pruned copy instead of masking the weights."),
    ] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Evaluate a model on POPE (per category) and ScienceQA, with the image-free baseline: dense, or pruned by a
    saved blueprint (`--plan`, masked unless `--physical`)."""
    from hipp_core import api

    def body() -> None:
        if physical and plan is None:
            raise HippError("--physical needs --plan: it says how to apply a blueprint to the model")
        blueprint = api.read_plan(plan) if plan is not None else None
        mode = "physical" if physical else "masked"
        with progress_bar() as cb:
            result = api.evaluate_model(
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
                parser=parser,
                sqa_images=sqa_images,
                blueprint=blueprint,
                mode=mode,
                folders=_named_folders(data),
                **_settings(device, dtype),
            )
        evaluated = None if blueprint is None else {"plan_id": blueprint.plan_id, "file": str(plan), "mode": mode}
        _print_notices(result)
        if as_json:
            report = result.to_json() if evaluated is None else result.to_json() | {"plan": evaluated}
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            return
        _print_result(result, split, f"model {result.model_id}")
        if evaluated is not None:
            out.print(
                f"evaluated under plan {blueprint.plan_id} from {plan} "
                f"({blueprint.achieved:.1%} of decoder parameters removed), {mode}",
                soft_wrap=True,
            )

    run(body)


@app.command("score")
def score_cmd(
    answers: Annotated[Path, typer.Argument(help="Answer file: POPE's {question, answer} lines or LLaVA's answers.")],
    questions: Annotated[
        Path | None,
        typer.Option(help="LLaVA's POPE question file (llava_pope_test.jsonl) that LLaVA's answers answer."),
    ] = None,
    pope_labels: Annotated[
        Path | None,
        typer.Option(
            help="POPE label file (*_pope_<category>.json), or with --questions the folder of "
            "coco_pope_<category>.json files."
        ),
    ] = None,
    sqa_dir: Annotated[
        Path | None, typer.Option(help="ScienceQA root (problems.json, pid_splits.json) for LLaVA's ScienceQA answers.")
    ] = None,
    sqa_images: Annotated[
        Path | None, typer.Option(help="ScienceQA image folder; not needed to score, checked when given.")
    ] = None,
    split: Annotated[str, typer.Option(help="ScienceQA split the answers are for (a label for POPE).")] = "test",
    name: Annotated[
        str | None,
        typer.Option(help="Model these answers are from, as stored (default: the answers' model_id + ' (answers)')."),
    ] = None,
    parser: ParserOpt = "official",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """Score answers made elsewhere (POPE's or LLaVA's answer files) as `hipp eval` scores a model, and store them."""
    from hipp_core import api

    def body() -> None:
        result = api.score_answers(answers, questions, pope_labels, sqa_dir, name, parser, split, sqa_images)
        _print_notices(result)
        if as_json:
            sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
            return
        _print_result(result, split, f"answers of {result.model_name}, model id {result.model_id}")

    run(body)


@app.command("calibrate")
def calibrate_cmd(
    model: ModelArg,
    samples: Annotated[int, typer.Option(help="Calibration questions (POPE, cycling its categories).")] = 128,
    batch_size: Annotated[int, typer.Option(help="Questions per forward pass.")] = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the features as JSON only, on stdout.")] = False,
    pope_dir: PopeDirOpt = None,
    pope_images: PopeImagesOpt = None,
    pope_labels: PopeLabelsOpt = None,
    sqa_dir: SqaDirOpt = None,
    sqa_images: SqaImagesOpt = None,
    split: TuneSplitOpt = None,
    test_pope: TestPopeOpt = None,
    test_split: TestSplitOpt = None,
    shapesworld: ShapesWorldOpt = False,
) -> None:
    """Per-layer visual sensitivity, activation statistics and unit scores (Wanda-sp, magnitude, SynFlow), on
    ShapesWorld calib for an embedded model, on your POPE dev set (--pope-dir) for a local checkpoint."""
    from hipp_core.api import calibrate_model

    def body() -> None:
        data = _data(pope_dir, pope_images, pope_labels, sqa_dir, sqa_images, split, test_pope, test_split, shapesworld)
        with progress_bar() as cb:
            features, cached = calibrate_model(model, samples, batch_size, cb, data=data, **_settings(device, dtype))
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


@plan_app.callback()
def plan_group(ctx: typer.Context) -> None:
    """Make pruning blueprints."""
    if ctx.invoked_subcommand == "baseline":  # before its options are parsed, so its --help lists them too
        _describe_methods(ctx.command.commands["baseline"])


def _describe_methods(command) -> None:
    """Fill the help of `plan baseline` from the method and criterion registries. Done when the command is invoked,
    not at import: listing them imports the library, which must load after the process settings apply."""
    from hipp_core import api

    described = {
        "method": "One of: "
        + "; ".join(f"{name} ({api.planning_method(name).help})" for name in api.method_names())
        + ". `hipp plan methods` lists their settings.",
        "criterion": "Unit criterion that picks the kept heads and channels: "
        + "; ".join(f"{name} ({help})" for name, help in api.criteria().items())
        + ". Default: the method's own.",
        "settings": "A setting of the method as NAME=VALUE (repeatable); each method takes: "
        + "; ".join(
            f"{name}: {', '.join(o.name for o in api.planning_method(name).options()) or 'none'}"
            for name in api.method_names()
        )
        + ".",
    }
    for param in command.params:
        param.help = described.get(param.name, param.help)


@plan_app.command("baseline")
def plan_baseline_cmd(
    model: ModelArg,
    method: Annotated[str, typer.Option(help="A registered planning method (listed when this help is shown).")],
    sparsity: Annotated[float, typer.Option(help="Fraction of decoder-layer parameters to remove, in (0, 0.9).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the blueprint JSON.")],
    settings: Annotated[list[str] | None, typer.Option("--set", help="A setting of the method as NAME=VALUE.")] = None,
    criterion: Annotated[str | None, typer.Option(help="Unit criterion (default: the method's own).")] = None,
    n_random: Annotated[int | None, typer.Option(help="Candidates for --method random (--set n_random=N).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the random candidates (--set seed=N).")] = None,
    backend: Annotated[str | None, typer.Option(help="Evaluator backend for --method random: local or ray.")] = None,
    address: AddressOpt = None,
    num_workers: WorkersOpt = None,
    pope_dir: PopeDirOpt = None,
    pope_images: PopeImagesOpt = None,
    pope_labels: PopeLabelsOpt = None,
    sqa_dir: SqaDirOpt = None,
    sqa_images: SqaImagesOpt = None,
    split: TuneSplitOpt = None,
    test_pope: TestPopeOpt = None,
    test_split: TestSplitOpt = None,
    shapesworld: ShapesWorldOpt = False,
    equal_counts: EqualCountsOpt = False,
    batch_size: Annotated[
        int, typer.Option(help="Questions per forward pass (scoring; calibration uses at most 16).")
    ] = 32,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """A blueprint of a registered planning method at a given sparsity (heuristics, search, the peer, the policy)."""
    from hipp_core.api import plan_baseline

    def body() -> None:
        data = _data(pope_dir, pope_images, pope_labels, sqa_dir, sqa_images, split, test_pope, test_split, shapesworld)
        options = _parse_settings(settings or [])
        with progress_bar() as cb:
            blueprint = plan_baseline(
                model,
                method,
                sparsity,
                criterion=criterion,
                n_random=n_random,
                seed=seed,
                progress=cb,
                backend=backend,
                backend_options=_backend_options(address, num_workers),
                data=data,
                options=options,
                equal_counts=equal_counts,
                batch_size=batch_size,
                **_settings(device, dtype),
            )
        _write_plan(blueprint, output)
        out.print(
            f"{method}: plan {blueprint.plan_id}, {blueprint.achieved:.2%} of decoder parameters removed "
            f"(asked {sparsity:.2%}) → {output}"
        )

    run(body)


def _parse_settings(items: list[str]) -> dict[str, str]:
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise HippError(f"--set takes NAME=VALUE (e.g. --set n_random=16), got {item!r}")
        options[name.strip()] = value.strip()
    return options


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(_show(x) for x in value)
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


@plan_app.command("methods")
def plan_methods_cmd() -> None:
    """The registered planning methods, their settings with defaults, and the unit criteria."""
    from hipp_core import api

    table = Table("method", "kind", "what it does", "settings (default)", show_lines=True)
    for name in api.method_names():
        method = api.planning_method(name)
        settings = "\n".join(f"{o.name} ({_show(o.default)}): {o.help}" for o in method.options())
        table.add_row(name, method.kind, method.help, settings or "-")
    out.print(table)
    criteria = Table("criterion", "what it scores", title="unit criteria")
    for name, help in api.criteria().items():
        criteria.add_row(name, help)
    out.print(criteria)


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
    imitation: Annotated[
        float, typer.Option(help="Weight of self-imitation of the best plan seen per preference (0: plain GRPO).")
    ] = 0.5,
    replay: Annotated[
        int,
        typer.Option(
            help="Random (preference, budget) pairs per update whose best plan seen is imitated too (0: none)."
        ),
    ] = 0,
    limit: Annotated[
        int, typer.Option(help="Dev questions per POPE category and of ScienceQA behind each reward.")
    ] = 100,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    num_workers: WorkersOpt = None,
    pope_dir: PopeDirOpt = None,
    pope_images: PopeImagesOpt = None,
    pope_labels: PopeLabelsOpt = None,
    sqa_dir: SqaDirOpt = None,
    sqa_images: SqaImagesOpt = None,
    split: TuneSplitOpt = None,
    test_pope: TestPopeOpt = None,
    test_split: TestSplitOpt = None,
    shapesworld: ShapesWorldOpt = False,
    batch_size: Annotated[
        int, typer.Option(help="Questions per forward pass (scoring; calibration uses at most 16).")
    ] = 32,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """Train the preference-conditioned policy with plan-level GRPO on a dev set (resumable): ShapesWorld dev for
    an embedded model, your POPE dev set and ScienceQA --split for a local checkpoint."""
    from hipp_core import api

    def body() -> None:
        api.validation.count(limit, "--limit")
        data = _data(pope_dir, pope_images, pope_labels, sqa_dir, sqa_images, split, test_pope, test_split, shapesworld)
        config = api.GRPOConfig(
            reward=reward,
            seed=seed,
            limit=limit,
            prefs_per_iter=prefs,
            fixed_budget_groups=prefs // 2,
            imitation_coef=imitation,
            imitation_replay=replay,
        )
        options = _backend_options(address, num_workers)
        with progress_bar() as cb:
            record = api.train_policy(
                model,
                iters,
                group_size,
                resume,
                config,
                backend,
                options,
                progress=cb,
                data=data,
                batch_size=batch_size,
                **_settings(device, dtype),
            )
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
    equal_counts: EqualCountsOpt = False,
    batch_size: Annotated[
        int, typer.Option(help="Questions per forward pass, if the model is not calibrated yet.")
    ] = 16,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """The trained policy's blueprint for a preference, in milliseconds."""
    from hipp_core.api import planner

    def body() -> None:
        preference = _parse_preference(pref)
        plans = planner(model, batch_size=batch_size, **_settings(device, dtype))
        t0 = time.perf_counter()
        blueprint = plans.blueprint(preference, sparsity, equal_counts)
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
    export_format: FormatOpt = "exact",
    device: DeviceOpt = "auto",
    dtype: Annotated[
        str,
        typer.Option(
            help="Number format the model is loaded in for the export (auto: the checkpoint's own); the export is "
            "written in the checkpoint's dtype either way."
        ),
    ] = "auto",
) -> None:
    """Write the pruned model as a checkpoint plain transformers loads (exact: with trust_remote_code=True; stock:
    without remote code). Weights keep the source checkpoint's dtype."""
    from hipp_core import api

    def body() -> None:
        blueprint = api.read_plan(plan)
        path = api.export_plan(
            model, blueprint, output, overwrite, export_format=export_format, **_settings(device, dtype)
        )
        written = str(api.checkpoint_dtype(path)).removeprefix("torch.")
        out.print(
            f"exported {blueprint.plan_id} ({blueprint.achieved:.1%} of decoder parameters removed, format "
            f"{export_format}) → {path} ({api.disk_size(path) / 2**20:,.1f} MiB on disk, {written})"
        )
        if export_format == "stock":
            out.print(api.stock_sizes(model, blueprint).describe(), highlight=False, soft_wrap=True)

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
        api.validation.count(limit, "--limit")
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
    batch_size: Annotated[int, typer.Option(help="LoRA training samples per forward pass.")] = 16,
    grad_accum: Annotated[
        int, typer.Option(help="Micro-batches of --batch-size per update (the update sees their product).")
    ] = 1,
    grad_checkpointing: Annotated[
        bool, typer.Option(help="Recompute activations in the backward pass: less memory, same result, slower.")
    ] = False,
    pope_dir: PopeDirOpt = None,
    pope_images: PopeImagesOpt = None,
    pope_labels: PopeLabelsOpt = None,
    sqa_dir: SqaDirOpt = None,
    sqa_images: SqaImagesOpt = None,
    split: Annotated[
        str | None, typer.Option(help="ScienceQA split of --sqa-dir the scores are reported on (default test).")
    ] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")] = False,
) -> None:
    """LoRA-recover a pruned model (language decoder only), merge, store it as an export, and compare test scores
    before and after: on ShapesWorld test, or on your POPE / ScienceQA test files (the options `hipp eval` takes).
    Rerunning after a kill resumes; the same settings again return the stored model."""
    from hipp_core import api

    def body() -> None:
        own = pope_dir is not None or sqa_dir is not None
        scored_on = _data(pope_dir, pope_images, pope_labels, sqa_dir, sqa_images, split, None, None, False)
        blueprint = api.read_plan(plan)
        with progress_bar() as cb:
            result = api.recover(
                model,
                blueprint,
                steps,
                rank,
                data,
                seed,
                lr,
                progress=cb,
                limit=limit,
                batch_size=batch_size,
                grad_accum=grad_accum,
                grad_checkpointing=grad_checkpointing,
                eval_data=scored_on if own else None,
                **_settings(device, dtype),
            )
        _print_notices(result)
        if as_json:
            report = {"artifact_dir": str(result.artifact_dir), "seconds": result.seconds, "steps": result.steps}
            report |= {"cached": result.cached, "before": result.before.to_json(), "after": result.after.to_json()}
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            return
        where = "your test data" if own else "ShapesWorld test split"
        table = Table("", "pruned", "recovered", title=f"{where}, plan {blueprint.plan_id}")
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
    recover_data: Annotated[
        Path | None,
        typer.Option(
            help="LLaVA-format instruction file LoRA recovery trains on, as `hipp recover --data` takes (default: "
            "ShapesWorld train; required for a local checkpoint tuned on your own data)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export at --output.")] = False,
    pope_dir: PopeDirOpt = None,
    pope_images: PopeImagesOpt = None,
    pope_labels: PopeLabelsOpt = None,
    sqa_dir: SqaDirOpt = None,
    sqa_images: SqaImagesOpt = None,
    split: TuneSplitOpt = None,
    test_pope: TestPopeOpt = None,
    test_pope_images: TestPopeImagesOpt = None,
    test_split: TestSplitOpt = None,
    shapesworld: ShapesWorldOpt = False,
    equal_counts: EqualCountsOpt = False,
    export_format: FormatOpt = "exact",
    batch_size: Annotated[
        int, typer.Option(help="Questions per forward pass (scoring; calibration and LoRA use at most 16).")
    ] = 32,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
) -> None:
    """calibrate → blueprint → materialize → recover → evaluate → export, reusing everything already computed.
    Calibration and rewards read the data options as `train-policy` does; with your own data, the dense, pruned and
    recovered models are scored on the --test-pope file or folder and the --test-split of --sqa-dir, and recovery
    trains on --recover-data."""
    from hipp_core.api import pipeline

    def body() -> None:
        preference = _parse_preference(pref)
        data = _data(
            pope_dir,
            pope_images,
            pope_labels,
            sqa_dir,
            sqa_images,
            split,
            test_pope,
            test_split,
            shapesworld,
            test_pope_images,
        )
        with progress_bar() as cb:
            result = pipeline(
                model,
                preference,
                sparsity,
                output,
                steps,
                rank,
                iters,
                limit,
                overwrite,
                progress=cb,
                data=data,
                equal_counts=equal_counts,
                export_format=export_format,
                batch_size=batch_size,
                recover_data=recover_data,
                **_settings(device, dtype),
            )
        _print_notices(result.recovery)
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
            pope = [
                f"{r.pope[c].balanced_accuracy:.3f}" if c in r.pope else "-"
                for c in ("random", "popular", "adversarial")
            ]
            table.add_row(name, removed, *pope, f"{r.sqa.accuracy:.3f}" if r.sqa else "-")
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
    report_peak_memory_if_asked()  # only the real entry point: in-process tests must not report at their exit
    prepare_process()
    app()


if __name__ == "__main__":
    main()
