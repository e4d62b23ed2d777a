"""Dense quality of the embedded models on ShapesWorld `test`, next to the image-free baseline and the targets.

Prints JSON (and writes it to benchmarks/results/dense_quality.json with --save). Targets of the testbed-v2 issue,
both models: POPE balanced accuracy >= 0.90 on every category, ShapesSQA accuracy >= 0.80 and >= 0.75 on its image
questions; the blank-image baselines must stay at chance.

    python benchmarks/dense_quality.py [--split test] [--save]
"""

from __future__ import annotations

import argparse

from results_io import emit

from hipp_core.api import evaluate_model
from hipp_core.config import quiet_libraries, set_threads
from hipp_core.models.loading import load_model
from hipp_core.models.zoo import train_info, train_seconds, train_threads

TARGETS = {"embedded:llava": (0.90, 0.80), "embedded:qwen2_5_vl": (0.90, 0.80)}
SQA_IMAGE_TARGET = 0.75


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    quiet_libraries()
    set_threads()
    report = {"split": args.split, "models": {}}
    for spec, (pope_target, sqa_target) in TARGETS.items():
        result = evaluate_model(spec, "all", args.split)
        info = train_info(load_model(spec).path) or {}
        pope = {c: round(m.balanced_accuracy, 4) for c, m in result.pope.items()}
        report["models"][spec] = {
            "pope_balanced_accuracy": pope,
            "pope_yes_ratio": {c: round(m.yes_ratio, 4) for c, m in result.pope.items()},
            "pope_image_free_balanced_accuracy": {
                c: round(m.balanced_accuracy, 4) for c, m in result.pope_image_free.items()
            },
            "sqa_accuracy": round(result.sqa.accuracy, 4),
            "sqa_accuracy_image": round(result.sqa.accuracy_image, 4),
            "sqa_accuracy_text": round(result.sqa.accuracy_text, 4),
            "sqa_image_questions_blank_image": round(result.sqa_image_free.accuracy_image, 4),
            "targets": {"pope_each_category": pope_target, "sqa": sqa_target, "sqa_image": SQA_IMAGE_TARGET},
            "meets_targets": min(pope.values()) >= pope_target
            and result.sqa.accuracy >= sqa_target
            and result.sqa.accuracy_image >= SQA_IMAGE_TARGET,
            "questions": result.questions,
            "train_seconds": train_seconds(info),
            "train_threads": train_threads(info),
            "train_config": info.get("train_config"),
        }
    emit("dense_quality", report, args.save)


if __name__ == "__main__":
    main()
