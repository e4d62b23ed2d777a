"""Regenerate the README's results section from benchmarks/results/*.json: no number in it is typed by hand.

Rewrites what lies between the `<!-- results:start -->` and `<!-- results:end -->` markers of README.md and redraws
the figures the section links (docs/img/tradeoff.png); a result file that is missing is listed with the command that
produces it.

    python benchmarks/readme.py
"""

from __future__ import annotations

from pathlib import Path

from results_io import RESULTS, load

from hipp_core.data.records import POPE_CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TRADEOFF_PLOT = Path("docs/img/tradeoff.png")  # relative to the repository root, as the README links it
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _missing(name: str, command: str) -> list[str]:
    return [f"*Not measured yet* (`{command}` writes `benchmarks/results/{name}.json`).", ""]


def dense_quality() -> list[str]:
    r = load("dense_quality")
    out = ["### Dense embedded models (test split)", ""]
    if r is None:
        return out + _missing("dense_quality", "python benchmarks/dense_quality.py --save")
    rows = []
    for spec, m in r["models"].items():
        b, free = m["pope_balanced_accuracy"], m["pope_image_free_balanced_accuracy"]
        rows.append(
            [
                spec,
                " / ".join(f"{b[c]:.3f}" for c in POPE_CATEGORIES),
                " / ".join(f"{free[c]:.3f}" for c in POPE_CATEGORIES),
                f"{m['sqa_accuracy']:.3f} ({m['sqa_accuracy_image']:.3f} / {m['sqa_accuracy_text']:.3f})",
                f"{m['sqa_image_questions_blank_image']:.3f}",
                f"≥ {m['targets']['pope_each_category']} / ≥ {m['targets']['sqa']} ({m['targets']['sqa_image']})",
                "yes" if m["meets_targets"] else "**no**",
                _retrain(m),
            ]
        )
    header = [
        "model",
        "POPE bal. acc. r / p / a",
        "blank image",
        "SQA acc. (image / text)",
        "SQA image, blank",
        "target POPE / SQA (image)",
        "met",
        "retrain (CPU)",
    ]
    return [*out, *_table(header, rows), ""]


def _retrain(m: dict) -> str:
    if m.get("train_seconds") is None:
        return "n/a"
    threads = m.get("train_threads") or []  # a count per run that trained it (one number in older results)
    threads = sorted(set(threads if isinstance(threads, list) else [threads]))
    if not threads:
        return f"{m['train_seconds'] / 60:.0f} min"
    counts = str(threads[0]) if len(threads) == 1 else f"{threads[0]}–{threads[-1]}"
    return f"{m['train_seconds'] / 60:.0f} min, {counts} thread{'s' if threads[-1] > 1 else ''}"


def matched_sparsity() -> list[str]:
    r = load("matched_sparsity")
    out = ["### Heuristics and the Torch-Pruning peer at matched sparsity (dev split)", ""]
    if r is None:
        return out + _missing("matched_sparsity", "python benchmarks/matched_sparsity.py --save")
    out += ["Adversarial POPE balanced accuracy / ScienceQA accuracy per decoder sparsity.", ""]
    for spec, m in r["models"].items():
        sparsities = sorted({p["sparsity"] for p in m["plans"]})
        methods = list(dict.fromkeys(p["method"] for p in m["plans"]))
        cell = {(p["method"], p["sparsity"]): p for p in m["plans"]}
        rows = []
        for method in methods:
            row = [method]
            for s in sparsities:
                p = cell.get((method, s))
                row.append(
                    "n/a"
                    if p is None or "error" in p
                    else f"{p['pope_balanced_accuracy']['adversarial']:.3f} / {p['sqa_accuracy']:.3f}"
                )
            rows.append(row)
        dense = m["dense"]
        out += [
            (
                f"**{spec}** (dense: {dense['pope_balanced_accuracy']['adversarial']:.3f} / {dense['sqa_accuracy']:.3f}; "
                f"spread of the heuristics at 0.3: {m['spread_adversarial_at_0.3']:.3f})"
            ),
            "",
            *_table(["method", *[str(s) for s in sparsities]], rows),
            "",
        ]
    return out


def policy_quality() -> list[str]:
    out = ["### The policy against search and heuristics", ""]
    md = RESULTS / "policy_quality.md"
    if not md.exists():
        return out + _missing("policy_quality", "python benchmarks/policy_quality.py --save")
    return [*out, md.read_text().strip(), "", *gate_audit()]


def gate_audit() -> list[str]:
    out = ["#### The stability gate, audited on calib", ""]
    r = load("gate_audit")
    if r is None:
        return out + _missing("gate_audit", "python benchmarks/gate_audit.py --save")
    for m in r["models"]:
        rho = m["spearman_stability_vs"]
        rates = ", ".join(
            f"τ {t['tau']}: {t['false_gate_rate']:.0%} of {t['gated']} gated" for t in m["thresholds"] if t["gated"]
        )
        best = m["largest_tau_meeting_target"]
        verdict = f"largest τ within the target: {best}" if best is not None else "no τ of the grid meets the target"
        out.append(
            f"- {m['model']}, {m['plans']} random plans: Spearman of SynFlow stability with utility {rho['utility']}, "
            f"robustness {rho['robustness']}, compression {rho['compression']}; false gates per threshold: {rates}; {verdict} (≤ {r['target_false_gate_rate']} with at least 5 gated)."
        )
    return [*out, ""]


def tradeoff_plot(r: dict, out: Path) -> None:
    """Test POPE adversarial balanced accuracy against ScienceQA accuracy of each model's dev-front plans, the dense
    model starred and the best pair joined; written as a PNG (matplotlib comes with pymoo)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = r["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(4.8 * len(models), 4.2), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        by_id = {p["plan_id"]: p for p in m["plans"]}
        ax.scatter(
            [p["pope_adversarial"] for p in m["plans"]], [p["sqa"] for p in m["plans"]], label="NSGA-II dev front"
        )
        ax.scatter([m["dense"]["pope_adversarial"]], [m["dense"]["sqa"]], marker="*", s=220, c="black", label="dense")
        pair = m["best_pair"]
        if pair["min_gap"] is not None:
            a, b = by_id[pair["pope_plan"]], by_id[pair["sqa_plan"]]
            ax.plot(
                [a["pope_adversarial"], b["pope_adversarial"]],
                [a["sqa"], b["sqa"]],
                "--",
                c="tab:red",
                label=f"best pair (min-gap {pair['min_gap']:.3f})",
            )
        ax.set(
            title=f"{m['model']} at sparsity {m['sparsity']}",
            xlabel="POPE adversarial balanced accuracy (test)",
            ylabel="ScienceQA accuracy (test)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(out)


def tradeoff() -> list[str]:
    r = load("tradeoff")
    out = ["### Trade-off between POPE and ScienceQA at matched sparsity (test split)", ""]
    if r is None:
        return out + _missing("tradeoff", "python benchmarks/tradeoff.py --save")
    tradeoff_plot(r, ROOT / TRADEOFF_PLOT)
    out += [
        (
            "NSGA-II searches allocations at a fixed decoder sparsity on dev, maximizing ScienceQA accuracy and mean POPE "
            "balanced accuracy (relative to dense); the plans of its dev front are scored on test. Target: two plans each "
            "≥ 3 points better than the other on one of POPE adversarial and ScienceQA; min-gap is the largest "
            "min(A.pope − B.pope, B.sqa − A.sqa) over pairs."
        ),
        "",
        f"![POPE adversarial vs ScienceQA of the dev-front plans on test]({TRADEOFF_PLOT.as_posix()})",
        "",
    ]
    rows = []
    for m in r["models"]:
        pair, dense, s = m["best_pair"], m["dense"], m["settings"]
        rows.append(
            [
                m["model"],
                str(m["sparsity"]),
                f"{dense['pope_adversarial']:.3f} / {dense['sqa']:.3f}",
                f"{len(m['plans'])} of {m['distinct_plans_evaluated']} ({m['n_evals']} evaluations, dev limit {s['limit']})",
                "n/a" if pair["min_gap"] is None else f"{pair['min_gap']:.3f}",
                "yes" if pair["met"] else "**no**",
            ]
        )
    header = ["model", "sparsity", "dense POPE adv. / SQA", "front plans", "min-gap", "≥ 0.03"]
    return [*out, *_table(header, rows), ""]


def steering() -> list[str]:
    r = load("steering")
    out = ["### Does the preference steer the plan? (dev split, at the trade-off budget)", ""]
    if r is None:
        return out + _missing("steering", "python benchmarks/steering.py --save")
    out += [
        (
            "A and B: the trade-off front's most robust and most useful plans on dev. Reward margin: how much more "
            "reward A earns than B under the robustness-heavy preference (0.1, 0.8, 0.1), and B than A under the "
            "utility-heavy one (0.8, 0.1, 0.1), on GRPO's reward questions, also in units of the reward spread inside "
            "a group of the policy's own samples at that preference. Distances: mean absolute difference of the kept "
            "share of every attention and MLP block. A Spearman near 1 means every preference ranks the policy's samples alike."
        ),
        "",
    ]
    rows = []
    for m in r["models"]:
        if "policy" not in m:
            rows.append([m["model"], m["note"], "", "", "", "", ""])
            continue
        robust, utility = m["policy"]["robust"], m["policy"]["utility"]
        closest = [robust["samples"]["closest_to_A"], utility["samples"]["closest_to_B"]]
        rows.append(
            [
                m["model"],
                f"{m['pair_distance']:.3f}",
                f"{robust['reward_margin']:+.4f} / {utility['reward_margin']:+.4f}",
                f"{robust['margin_over_reward_std']:+.2f} / {utility['margin_over_reward_std']:+.2f}",
                f"{m['policy_mean_plans_distance']:.3f}",
                f"{closest[0]:.3f} / {closest[1]:.3f}",
                "n/a"
                if m["samples_utility_robustness_spearman"] is None
                else f"{m['samples_utility_robustness_spearman']:+.2f}",
            ]
        )
    header = [
        "model",
        "A ↔ B distance",
        "reward margin robust / utility",
        "margin ÷ sample reward std",
        "policy robust ↔ utility plan distance",
        "closest sample to A (robust) / B (utility)",
        "utility–robustness Spearman over the samples",
    ]
    return [*out, *_table(header, rows), ""]


def recovery() -> list[str]:
    r = load("recovery")
    out = ["### LoRA recovery (test split)", ""]
    if r is None:
        return out + _missing("recovery", "python benchmarks/recovery.py --save")
    rows = []
    for row in r["rows"]:
        if "before" not in row:
            rows.append([row["method"], str(row["sparsity"]), row.get("error", "n/a"), "", "", "", ""])
            continue
        before, after = row["before"]["pope_balanced_accuracy"], row["after"]["pope_balanced_accuracy"]
        shares = [row["regained_share"], row.get("regained_share_adversarial", "n/a")]  # older files: mean only
        rows.append(
            [
                row["method"],
                str(row["sparsity"]),
                " / ".join(f"{before[c]:.3f}" for c in POPE_CATEGORIES),
                " / ".join(f"{after[c]:.3f}" for c in POPE_CATEGORIES),
                f"{row['before']['sqa_accuracy']:.3f} → {row['after']['sqa_accuracy']:.3f}",
                " / ".join("nothing lost" if x is None else x if isinstance(x, str) else f"{x:.0%}" for x in shares),
                f"{row['train_seconds']:.0f}",
            ]
        )
    header = ["plan", "sparsity", "before r / p / a", "after r / p / a", "SQA", "regained mean / adv.", "train s"]
    return [*out, *_table(header, rows), ""]


def speed() -> list[str]:
    out = ["### Speed", ""]
    rows = []
    masked = load("masked_eval")
    if masked:
        rows.append(["masked / dense evaluation time", f"{masked['masked_over_dense']}", "≤ 1.15"])
        rows.append(["plans scored per minute (dev subset)", f"{masked['plans_per_minute']}", ""])
    prune = load("prune_speed")
    for p in (prune or {}).get("plans", []):
        rows.append(
            [
                f"pruned / dense prefill at {p['sparsity_asked']} (FLOPs ratio {p['decoder_flops_ratio']})",
                f"{p['prefill_latency_ratio']}",
                "≤ 1.25 × FLOPs ratio",
            ]
        )
        rows.append([f"pruned / dense decode latency at {p['sparsity_asked']}", f"{p['decode_latency_ratio']}", ""])
    scale = load("scale")
    if scale:
        rows.append(["Ray 2 workers / 1 worker, plans per minute", f"{scale['ray_2_over_1_plans_per_minute']}", ""])
    latency = load("app_latency")
    if latency:
        rows.append(["dashboard slider move → page redrawn, median ms", f"{latency['median_ms']}", "≤ 300"])
    busy = load("app_latency_busy")
    if busy:
        rows.append(["the same with one job running (a LoRA recovery), median ms", f"{busy['median_ms']}", "≤ 450"])
    if not rows:
        return out + ["*Not measured yet* (run the speed benchmarks with `--save`).", ""]
    return [*out, *_table(["measure", "value", "target"], rows), ""]


def gpu_speed() -> list[str]:
    r = load("gpu_7b")
    out = ["### Pruned vs dense on a GPU (7B architectures, random weights)", ""]
    if r is None or "archs" not in r:
        return out + ["Needs a CUDA GPU; " + _missing("gpu_7b", "python benchmarks/gpu_7b.py --save")[0], ""]
    intro = (
        f"{r['device']}, {r['dtype']}, torch {r['torch']}, transformers {r['transformers']}; measured memory bandwidth "
        f"{r['memory_bandwidth_gb_s']} GB/s. Speedups are dense time / pruned time (uniform plans); the weight-read "
        "limit is the ratio of the language model's weight bytes, the best a bandwidth-bound decode can do."
    )
    out += [intro, ""]
    header = ["model", "sparsity", "prefill (FLOPs)", "eager decode", "compiled decode", "weight-read limit"]
    rows = []
    for arch, a in r["archs"].items():
        for p in a["plans"]:
            eager = ", ".join(f"b{b} {x}" for b, x in p["decode_eager_speedup"].items())
            compiled = ", ".join(f"b{b} {x}" for b, x in p["decode_compiled_speedup"].items())
            prefill = f"{p['prefill_speedup']} ({p['flops_speedup']})"
            rows.append([arch, str(p["sparsity"]), prefill, eager, compiled, str(p["weight_read_limit_speedup"])])
    return [*out, *_table(header, rows), ""]


STEP_NOTES = {  # what each pipeline step adds to its row, from its record
    "write_checkpoint": lambda s: f"{s['params'] / 1e9:.2f} B parameters, {s['size_on_disk_gib']} GiB {s['dtype']}",
    "calibrate": lambda s: f"{s['samples']} samples",
    "eval": lambda s: (
        f"{s['questions']} questions scored in {s['scoring_seconds']} s: "
        f"**{s['seconds_per_400_question_plan']} s per 400-question plan**"
    ),
    "plan_uniform": lambda s: f"{s['sparsity_achieved']:.1%} of decoder parameters removed",
    "recover": lambda s: f"{s['steps']} LoRA steps trained in {s['train_seconds']} s",
    "export_exact": lambda s: f"{s['size_on_disk_gib']} GiB {s['dtype']}",
    "export_stock": lambda s: f"{s['size_on_disk_gib']} GiB {s['dtype']}",
}


TARGET_NAMES = {
    "seconds_per_400_question_plan": "seconds per 400-question plan (eval's scoring time)",
    "calibration_128_samples_seconds": "`hipp calibrate --samples 128`, seconds (the whole command)",
    "peak_gpu_memory_gib": "peak GPU memory over every step, GiB",
}


def _met(target: dict) -> str:
    if target["met"] is None:
        return "not measured" if target["measured"] is None else "not yet: steps did not all run"
    return "yes" if target["met"] else "**no**"


def gpu_pipeline() -> list[str]:
    r = load("gpu_pipeline")
    out = ["### `hipp` end to end on a GPU (7B architectures, random weights)", ""]
    if r is None or not r.get("archs"):
        return out + [
            "Needs a CUDA GPU; " + _missing("gpu_pipeline", "python benchmarks/gpu_pipeline.py --save")[0],
            "",
        ]
    hw = r["hardware"] or {}
    settings = r["settings"]
    intro = (
        f"{hw.get('device')}, torch {hw.get('torch')}, transformers {hw.get('transformers')}. Each step is the CLI "
        "command itself, timed from process start (model load included); peak GPU memory is the command's own "
        f"(torch's allocator). Calibration {settings['samples']} samples, eval {settings['eval_limit']} questions per "
        f"POPE category and of ScienceQA, GRPO 1 iteration, recovery {settings['recover_steps']} steps at batch "
        f"{settings['recover_batch']}, a uniform plan at {settings['sparsity']}; ShapesWorld data."
    )
    out += [intro, ""]
    for arch, entry in r["archs"].items():
        rows = []
        for name, step in entry["steps"].items():
            if step["returncode"] != 0:
                note = f"**failed** (exit {step['returncode']}): {step['error'].splitlines()[-1]}"
            else:
                note = STEP_NOTES[name](step) if name in STEP_NOTES else ""
            peak = "-" if step["peak_gpu_gib"] is None else str(step["peak_gpu_gib"])
            rows.append([name, str(step["seconds"]), peak, note])
        out += [f"**{arch}**", "", *_table(["step", "seconds", "peak GPU GiB", ""], rows), ""]
        targets = entry.get("targets", {})
        rows = [
            [
                TARGET_NAMES.get(name, name) + (f" ({t['step']})" if t.get("step") else ""),
                f"≤ {t['limit']}",
                "-" if t["measured"] is None else str(t["measured"]),
                _met(t),
            ]
            for name, t in targets.items()
        ]
        out += [*_table(["target", "limit", "measured", "met"], rows), ""]
    return out


def main() -> None:
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} / {END} markers")
    body = [
        "Generated by `python benchmarks/readme.py` from `benchmarks/results/*.json` (2 CPU cores, no GPU).",
        "",
        *dense_quality(),
        *matched_sparsity(),
        *policy_quality(),
        *tradeoff(),
        *steering(),
        *recovery(),
        *speed(),
        *gpu_speed(),
        *gpu_pipeline(),
    ]
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(head + START + "\n" + "\n".join(body) + "\n" + END + tail)


if __name__ == "__main__":
    main()
