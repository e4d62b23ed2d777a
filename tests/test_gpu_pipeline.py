"""benchmarks/gpu_pipeline.py runs every `hipp` step on CPU stand-ins of both 7B architectures with --tiny, records
each step's time and the command's own peak memory, resumes from its report, and benchmarks/gpu_run.sh (the GPU
machine's one command) runs the tasks it is given."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BENCHMARKS, benchmark_module

from hipp_core.peak_memory import PREFIX, parse_report

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """The test session's environment (its own HIPP_CACHE, set by conftest after this module is imported)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "HIPP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _module():
    return benchmark_module("gpu_pipeline")


def _pipeline(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_pipeline.py"), "--tiny", "--out", str(out), *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _saved() -> str | None:
    saved = BENCHMARKS / "results" / "gpu_pipeline.json"
    return saved.read_text() if saved.exists() else None


def test_tiny_run_records_every_step_and_resumes(tmp_path, monkeypatch):
    """One architecture end to end, each step a real `hipp` process (a second would double the suite's longest
    test); LLaVA's 7B processor and config are checked below and its tiny checkpoint by test_gpu_benchmark."""
    gpu_pipeline = _module()
    saved = _saved()
    child = _pipeline(tmp_path, "--archs", "qwen2.5-vl-7b", "--keep")
    assert child.returncode == 0, child.stderr[-3000:]
    report_file = tmp_path / "gpu_pipeline.json"
    report = json.loads(report_file.read_text())
    assert json.loads(child.stdout) == report and report["tiny"] is True
    assert report["hardware"]["device"] == "cpu" and report["hardware"]["torch"]
    assert set(report["archs"]) == {"qwen2.5-vl-7b"}
    for arch, entry in report["archs"].items():
        steps = entry["steps"]
        assert list(steps) == list(gpu_pipeline.STEPS), arch
        for name, step in steps.items():
            assert step["returncode"] == 0 and step["seconds"] > 0, (arch, name, step)
            assert step["peak_host_rss_gib"] > 0, (arch, name)  # the command's own report at exit
            assert step["peak_gpu_gib"] is None, (arch, name)  # no GPU: not measured, not zero
        assert steps["write_checkpoint"]["image_tokens_per_scene"] == 4
        assert steps["calibrate"]["samples"] == gpu_pipeline.TINY.samples
        assert steps["eval"]["questions"] == 4 * gpu_pipeline.TINY.eval_limit  # 3 POPE categories + ScienceQA
        assert steps["eval"]["seconds_per_400_question_plan"] > 0
        assert abs(steps["plan_uniform"]["sparsity_achieved"] - 0.25) < 0.05
        assert steps["recover"]["steps"] == gpu_pipeline.TINY.recover_steps
        for fmt in ("exact", "stock"):
            assert steps[f"export_{fmt}"]["size_on_disk_gib"] > 0
            assert steps[f"export_{fmt}"]["dtype"] == "float32"  # the tiny checkpoint's own
        assert steps["eval"]["command"].startswith("hipp eval ")
        assert set(entry["targets"]) == set(gpu_pipeline.TARGETS)
        assert entry["targets"]["seconds_per_400_question_plan"]["met"] is not None
        assert entry["targets"]["peak_gpu_memory_gib"]["met"] is None  # nothing measured on a CPU
    assert _saved() == saved  # --tiny numbers never reach benchmarks/results

    # A rerun skips what the report holds while the checkpoint is still there: drop one step, and only it runs again
    # (in process, its command faked: the real one ran above and left its export, --keep).
    qwen = report["archs"]["qwen2.5-vl-7b"]["steps"]
    del qwen["export_stock"]
    report_file.write_text(json.dumps(report))
    ran = []

    def fake_run(command, env, returncode=0):
        ran.append(command)
        return gpu_pipeline.Finished(1.5, returncode, "", "error: no such thing" if returncode else "")

    monkeypatch.setattr(gpu_pipeline, "run", fake_run)
    args = gpu_pipeline.parse_args(["--tiny", "--out", str(tmp_path), "--archs", "qwen2.5-vl-7b"])
    assert gpu_pipeline.run_arch("qwen2.5-vl-7b", args, gpu_pipeline.Report(report_file, gpu_pipeline.new_report(args)))
    export = tmp_path / "qwen2.5-vl-7b" / "export-stock"
    assert len(ran) == 1 and ran[0][-4:] == ["--format", "stock", "-o", str(export)]
    rerun = json.loads(report_file.read_text())["archs"]["qwen2.5-vl-7b"]["steps"]
    assert list(rerun) == list(gpu_pipeline.STEPS) and rerun["export_stock"]["seconds"] == 1.5
    assert {k: v for k, v in rerun.items() if k != "export_stock"} == qwen
    assert not (tmp_path / "qwen2.5-vl-7b" / "checkpoint").exists()  # a finished architecture leaves no weights

    # Without its checkpoint (a fresh machine) an unfinished architecture starts over; a failed step ends it.
    del rerun["eval"]
    report_file.write_text(
        json.dumps(json.loads(report_file.read_text()) | {"archs": {"qwen2.5-vl-7b": {"steps": rerun}}})
    )
    monkeypatch.setattr(gpu_pipeline, "run", lambda command, env: fake_run(command, env, returncode=1))
    assert not gpu_pipeline.run_arch(
        "qwen2.5-vl-7b", args, gpu_pipeline.Report(report_file, gpu_pipeline.new_report(args))
    )
    (failed,) = json.loads(report_file.read_text())["archs"]["qwen2.5-vl-7b"]["steps"].items()
    assert failed[0] == "write_checkpoint" and failed[1]["returncode"] == 1 and "no such thing" in failed[1]["error"]


@pytest.mark.parametrize("arch, image_tokens", [("llava-1.5-7b", 576), ("qwen2.5-vl-7b", 144)])
def test_the_7b_processors_fit_their_configs_and_score_answers(arch, image_tokens, tmp_path):
    """What the GPU run's checkpoints carry, checked without weights: the real vocabulary with the configs' special
    ids, a ShapesWorld scene as many image tokens as a 336-px photo, distinct yes / no and option-letter candidates,
    and the saved folder loads the way `hipp` loads a checkpoint's processor."""
    from hipp_core.data.prompts import LETTERS, pope_prompt, sqa_prompt
    from hipp_core.models.adapters import adapter_class
    from hipp_core.models.loading import load_processor

    checkpoint7b = benchmark_module("checkpoint7b")
    arch7b = checkpoint7b.arch7b
    processor = checkpoint7b.processor_for(arch, tiny=False)  # raises when a special id is not the config's
    config = arch7b.config(arch)
    assert checkpoint7b.image_tokens(processor, config.image_token_id) == image_tokens
    processor.save_pretrained(tmp_path)
    loaded = load_processor(tmp_path, arch7b.family(arch))
    assert checkpoint7b.image_tokens(loaded, config.image_token_id) == image_tokens
    adapter = adapter_class(arch7b.family(arch))(None, loaded)
    yes, no = adapter.answer_token_ids(pope_prompt("Is there a red circle?"), True, ["yes", "no"], any_case=True)
    assert yes and no and not set(yes) & set(no)
    letters = adapter.answer_token_ids(sqa_prompt("Which shape?", ["circle", "star", "heart"], ""), True, LETTERS[:3])
    assert all(letters) and len(set().union(*letters)) == sum(map(len, letters))


def test_targets_say_met_not_met_or_not_measured():
    gpu_pipeline = _module()
    steps = {name: {"returncode": 0, "seconds": 5.0, "peak_gpu_gib": 20.0} for name in gpu_pipeline.STEPS}
    steps["calibrate"] |= {"samples": 128, "seconds": 61.0}
    steps["eval"] |= {"seconds_per_400_question_plan": 7.5}
    steps["recover"]["peak_gpu_gib"] = 80.5
    result = gpu_pipeline.targets(steps)
    assert result["seconds_per_400_question_plan"] == {"limit": 8.0, "measured": 7.5, "met": True}
    assert result["calibration_128_samples_seconds"] == {"limit": 60.0, "measured": 61.0, "met": False}
    assert result["peak_gpu_memory_gib"] == {"limit": 75.0, "measured": 80.5, "met": False, "step": "recover"}
    del steps["export_stock"]  # an unfinished run: missed already, as one step went over
    assert gpu_pipeline.targets(steps)["peak_gpu_memory_gib"]["met"] is False
    steps["recover"]["peak_gpu_gib"] = 30.0  # within the limit so far, but a step is still to run
    assert gpu_pipeline.targets(steps)["peak_gpu_memory_gib"] == {
        "limit": 75.0,
        "measured": 30.0,
        "met": None,
        "step": "recover",
    }


def test_a_failed_step_keeps_its_error_and_peak():
    gpu_pipeline = _module()
    peak = PREFIX + json.dumps(
        {"cuda_allocated_bytes": 3 * 2**30, "cuda_reserved_bytes": 4 * 2**30, "rss_bytes": 2**30}
    )
    done = gpu_pipeline.Finished(12.345, 2, "", f"loading…\nerror: out of memory\n{peak}\n")
    row = gpu_pipeline.record("recover", done, gpu_pipeline.Paths(Path("/nonexistent")))
    assert row["returncode"] == 2 and "out of memory" in row["error"]
    assert (row["seconds"], row["peak_gpu_gib"], row["peak_gpu_reserved_gib"]) == (12.35, 3.0, 4.0)
    assert parse_report("no report here\n") is None


@pytest.mark.parametrize(
    "argv, problem",
    [(["--tiny", "--save"], "never saved"), (["--jobs", "2"], "--jobs"), (["--archs", "llava-7b"], "unknown")],
)
def test_bad_options_are_refused(argv, problem, capsys):
    with pytest.raises(SystemExit):
        _module().parse_args(argv)
    assert problem in capsys.readouterr().err


def _gpu_run(*args: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_run.sh"), *args],
        env={**_env(), "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_gpu_run_dry_run_shows_each_task_with_its_budget(tmp_path):
    child = _gpu_run("--dry-run", "--budget", "500", "pipeline:qwen2.5-vl-7b", "7b:llava-1.5-7b", out=tmp_path)
    assert child.returncode == 0, child.stderr
    shown = child.stdout + child.stderr
    pipeline = next(line for line in shown.splitlines() if "gpu_pipeline.py" in line)
    assert re.match(r"\+ timeout --kill-after=15 (500|499) ", pipeline), pipeline  # the budget, less the set-up
    assert "--archs qwen2.5-vl-7b" in pipeline and "--save" in pipeline
    assert any("gpu_7b.py --archs llava-1.5-7b --save" in line for line in shown.splitlines())
    assert f"cp {ROOT}/benchmarks/results/gpu_pipeline.json {tmp_path}/gpu_pipeline.json" in shown
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_gpu_run_refuses_unknown_tasks_in_one_line(tmp_path):
    child = _gpu_run("--dry-run", "pipeline:llava-13b", out=tmp_path)
    assert child.returncode == 2
    assert child.stderr.strip().count("\n") == 0 and "llava-1.5-7b" in child.stderr


def test_readme_renders_the_saved_report_or_says_not_measured(monkeypatch):
    readme = benchmark_module("readme")
    monkeypatch.setattr(readme, "load", lambda name: None)
    assert "*Not measured yet*" in "\n".join(readme.gpu_pipeline())
    gpu_pipeline = _module()
    steps = {
        "write_checkpoint": {"params": 7_063_427_072, "size_on_disk_gib": 13.16, "dtype": "bfloat16"},
        "calibrate": {"samples": 128, "peak_gpu_gib": 35.5},
        "eval": {"questions": 400, "scoring_seconds": 8.4, "seconds_per_400_question_plan": 8.4},
        "train_policy": {"returncode": 1, "error": "Traceback …\ntorch.OutOfMemoryError: CUDA out of memory"},
    }
    for step in steps.values():
        step.setdefault("returncode", 0)
        step.setdefault("seconds", 42.0)
        step.setdefault("peak_gpu_gib", 14.0)
    report = {
        "hardware": {"device": "NVIDIA H200", "torch": "2.11.0+cu130", "transformers": "5.23.0"},
        "settings": gpu_pipeline.new_report(gpu_pipeline.parse_args([]))["settings"],
        "archs": {"llava-1.5-7b": {"steps": steps, "targets": gpu_pipeline.targets(steps)}},
    }
    monkeypatch.setattr(readme, "load", lambda name: report if name == "gpu_pipeline" else None)
    text = "\n".join(readme.gpu_pipeline())
    assert "NVIDIA H200" in text and "**8.4 s per 400-question plan**" in text
    assert "| train_policy | 42.0 | 14.0 | **failed** (exit 1): torch.OutOfMemoryError: CUDA out of memory |" in text
    assert "| seconds per 400-question plan (eval's scoring time) | ≤ 8.0 | 8.4 | **no** |" in text
    assert (
        "| peak GPU memory over every step, GiB (calibrate) | ≤ 75.0 | 35.5 | not yet: steps did not all run |" in text
    )
