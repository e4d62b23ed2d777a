"""The user's own data for calibration and rewards: POPE's recipe for a dev set, the refusals that keep tuning data
apart from test data, and content hashes that name data by what it holds, not where it lies."""

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from hipp_core.data import build as data_build
from hipp_core.data.pope import load_pope_dir
from hipp_core.data.pope_build import PopeBuildConfig, build_pope
from hipp_core.data.source import DataSource, data_key
from hipp_core.errors import HippError
from hipp_core.evaluation.stored import load_benchmark
from tests.conftest import invoke

# A tiny COCO: 12 images, 8 categories. Images 10 (two objects) and 12 (none) are never eligible for 3 questions.
CATEGORIES = ["person", "dog", "umbrella", "car", "apple", "bench", "cat", "oven"]
OBJECTS = {
    1: ["person", "dog", "umbrella", "car"],
    2: ["person", "car", "bench"],
    3: ["dog", "apple", "person"],
    4: ["apple", "bench", "umbrella", "cat"],
    5: ["car", "person", "dog", "apple"],
    6: ["umbrella", "person", "bench"],
    7: ["dog", "car", "apple", "oven"],
    8: ["person", "apple", "umbrella"],
    9: ["bench", "dog", "car"],
    10: ["person", "dog"],
    11: ["oven", "cat", "person"],
    12: [],
}
TEST_IMAGES = (2, 5, 9)  # what the test POPE file asks about


def name(image_id: int) -> str:
    return f"COCO_val2014_{image_id:012d}.jpg"


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, Path]:
    """COCO-style instances + images, a POPE test file on three of the images, and a tiny ScienceQA."""
    root = tmp_path_factory.mktemp("real")
    images = root / "val2014"
    images.mkdir()
    for i in OBJECTS:
        Image.new("RGB", (16, 16), (20 * i, 255 - 20 * i, 7 * i)).save(images / name(i))
    annotations = []
    for rank in range(4):  # interleaved across images as COCO lists them, with a repeated object in image 1
        for i, objects in OBJECTS.items():
            if rank < len(objects):
                annotations.append({"image_id": i, "category_id": CATEGORIES.index(objects[rank]) + 1})
    annotations.append({"image_id": 1, "category_id": 1})
    for n, ann in enumerate(annotations, start=1):
        ann["id"] = n
    instances = {
        "images": [{"id": i, "file_name": name(i), "width": 16, "height": 16} for i in OBJECTS],
        "annotations": annotations,
        "categories": [{"id": n, "name": c, "supercategory": "x"} for n, c in enumerate(CATEGORIES, start=1)],
    }
    (root / "instances_val2014.json").write_text(json.dumps(instances))
    test = root / "pope_test"
    test.mkdir()
    lines, qid = [], 1
    for i in TEST_IMAGES:
        for obj, label in ((OBJECTS[i][0], "yes"), ("oven", "no")):
            lines.append({"question_id": qid, "image": name(i), "text": f"Is there a {obj} in the image?"})
            lines[-1]["label"] = label
            qid += 1
    (test / "coco_pope_random.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return {
        "root": root,
        "instances": root / "instances_val2014.json",
        "images": images,
        "test": test,
        "sqa": sqa(root),
    }


def sqa(root: Path) -> Path:
    folder = root / "scienceqa"
    splits = {"train": ["1", "2"], "val": ["3", "4", "5"], "minival": ["3", "4"], "test": ["6", "7", "8"]}
    split_of = {pid: s for s, pids in splits.items() if s != "minival" for pid in pids}
    problems = {}
    for pid, split in split_of.items():
        image = "image.png" if int(pid) % 2 else None
        if image:
            (folder / "images" / split / pid).mkdir(parents=True)
            Image.new("RGB", (16, 16), (int(pid) * 30, 0, 0)).save(folder / "images" / split / pid / image)
        problems[pid] = {
            "question": f"Which colour is shape {pid}?",
            "choices": ["red", "blue", "green"][: 2 + int(pid) % 2],
            "answer": int(pid) % 2,
            "hint": "",
            "image": image,
            "split": split,
        }
    (folder / "problems.json").write_text(json.dumps(problems))
    (folder / "pid_splits.json").write_text(json.dumps(splits))
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def asked_object(text: str) -> str:
    return text.removeprefix("Is there ").split(" ", 1)[1].removesuffix(" in the image?")


@pytest.fixture(scope="module")
def dev(real, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dev")
    build_pope(real["instances"], out, PopeBuildConfig(images_count=6, seed=3), [real["test"]], real["images"])
    return out


def by_image(questions: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for q in questions:
        grouped.setdefault(q["image"], []).append(q)
    return grouped


def objects_of(image: str) -> list[str]:
    return OBJECTS[int(image.removeprefix("COCO_val2014_").removesuffix(".jpg"))]


# -- pope-build -----------------------------------------------------------------------------------------------------
def test_pope_build_writes_balanced_pope_files_in_the_real_format(dev, real):
    for strategy in ("random", "popular", "adversarial"):
        questions = read_jsonl(dev / f"dev_pope_{strategy}.json")
        assert len(questions) == 6 * 6
        assert all(list(q) == ["question_id", "image", "text", "label"] for q in questions)
        assert [q["question_id"] for q in questions] == list(range(1, 37))
        assert [q["label"] for q in questions] == ["yes", "no"] * 18  # alternating: every image is balanced
        for image, qs in by_image(questions).items():
            objects = objects_of(image)
            asked = [asked_object(q["text"]) for q in qs]
            assert asked[0::2] == objects[:3], "the first three annotated objects, in annotation order, are the yeses"
            assert not set(asked[1::2]) & set(objects) and len(set(asked)) == 6, "negatives absent and never repeated"
        texts = {q["text"] for q in questions}
        assert all(t.startswith(("Is there a ", "Is there an ")) and t.endswith(" in the image?") for t in texts)
        assert {t for t in texts if asked_object(t) in ("apple", "umbrella", "oven")} <= {
            f"Is there an {o} in the image?" for o in ("apple", "umbrella", "oven")
        }
    loaded = load_pope_dir(dev, real["images"])  # the project's own loader reads it as official POPE
    assert sorted(loaded) == ["adversarial", "popular", "random"] and len(loaded["popular"]) == 36


def test_popular_negatives_are_the_most_frequent_absent_objects(dev):
    questions = read_jsonl(dev / "dev_pope_popular.json")
    frequency = Counter(o for image in by_image(questions) for o in objects_of(image))
    for image, qs in by_image(questions).items():
        asked = set(objects_of(image))
        for q in qs[1::2]:
            negative = asked_object(q["text"])
            assert all(frequency[negative] >= frequency[o] for o in set(frequency) - asked), (image, negative)
            asked.add(negative)


def test_adversarial_negatives_co_occur_most_with_their_yes_object(dev):
    questions = read_jsonl(dev / "dev_pope_adversarial.json")
    drawn = [objects_of(image) for image in by_image(questions)]
    co = Counter((a, b) for objects in drawn for a in objects for b in objects if a != b)
    vocabulary = {o for objects in drawn for o in objects}
    for image, qs in by_image(questions).items():
        asked = set(objects_of(image))
        for yes, no in zip(qs[0::2], qs[1::2]):
            positive, negative = asked_object(yes["text"]), asked_object(no["text"])
            best = max(co[positive, o] for o in vocabulary - asked)
            assert co[positive, negative] == best, (image, positive, negative)
            asked.add(negative)
    assert any(
        co[asked_object(y["text"]), asked_object(n["text"])] > 0 for y, n in zip(questions[::2], questions[1::2])
    )


def test_pope_build_is_seeded_and_never_uses_an_excluded_image(real, dev, tmp_path):
    again = tmp_path / "again"
    build_pope(real["instances"], again, PopeBuildConfig(images_count=6, seed=3), [real["test"]], real["images"])
    for strategy in ("random", "popular", "adversarial"):
        assert (again / f"dev_pope_{strategy}.json").read_bytes() == (dev / f"dev_pope_{strategy}.json").read_bytes()
    used = {q["image"] for s in ("random", "popular", "adversarial") for q in read_jsonl(dev / f"dev_pope_{s}.json")}
    assert not used & {name(i) for i in TEST_IMAGES}
    assert used <= {name(i) for i in OBJECTS if len(OBJECTS[i]) >= 3}
    other = build_pope(real["instances"], tmp_path / "seed4", PopeBuildConfig(images_count=6, seed=4), [real["test"]])
    assert (
        other.images
        != build_pope(real["instances"], tmp_path / "s3", PopeBuildConfig(6, seed=3), [real["test"]]).images
    )
    with pytest.raises(
        HippError, match=r"only 7 images outside the excluded test files .* fewer than --images-count 8"
    ):
        build_pope(real["instances"], tmp_path / "big", PopeBuildConfig(images_count=8), [real["test"]])


def test_pope_build_cli_writes_the_files_and_refuses_missing_images(real, tmp_path):
    args = ["data", "pope-build", "--instances", str(real["instances"]), "--exclude", str(real["test"])]
    ok = invoke(*args, "--images-count", "4", "-o", str(tmp_path / "out"), "--prefix", "mine")
    assert ok.returncode == 0, ok.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*_pope_*.json")) == [
        "mine_pope_adversarial.json",
        "mine_pope_popular.json",
        "mine_pope_random.json",
    ]
    empty = tmp_path / "no_images"
    empty.mkdir()
    bad = invoke(*args, "--images-count", "4", "-o", str(tmp_path / "x"), "--images", str(empty))
    assert bad.returncode == 2 and "4 of the 4 drawn images are missing" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


# -- overlap, refusals ----------------------------------------------------------------------------------------------
def one_line_error(result) -> str:
    assert result.returncode == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_calibration_sharing_test_images_is_refused(real, tiny_llava, tmp_path):
    leaky = tmp_path / "leaky"  # built without --exclude: draws every eligible image, the test ones too
    build_pope(real["instances"], leaky, PopeBuildConfig(images_count=9))
    args = ["calibrate", str(tiny_llava), "--pope-dir", str(leaky), "--pope-images", str(real["images"])]
    line = one_line_error(invoke(*args, "--test-pope", str(real["test"])))
    assert "the calibration questions share 3 image(s) with the test files, e.g. COCO_val2014_000000000002.jpg" in line
    assert "pope-build --exclude" in line


def test_rewards_on_the_test_split_of_scienceqa_are_refused(real, dev, tiny_llava):
    data = ["--pope-dir", str(dev), "--pope-images", str(real["images"]), "--test-pope", str(real["test"])]
    args = ["train-policy", str(tiny_llava), *data, "--sqa-dir", str(real["sqa"]), "--split", "test"]
    line = one_line_error(invoke(*args))
    assert "share 3 ScienceQA problem(s) with the test split 'test', e.g. problem 6" in line


def test_a_local_checkpoint_without_data_is_refused_with_the_options_to_pass(tiny_llava, real):
    line = one_line_error(invoke("calibrate", str(tiny_llava)))
    assert "local checkpoint" in line and "--pope-dir" in line and "--shapesworld" in line
    line = one_line_error(invoke("train-policy", str(tiny_llava)))
    assert "rewards" in line and "--pope-dir DIR and --sqa-dir DIR with --split val" in line
    line = one_line_error(
        invoke("plan", "baseline", str(tiny_llava), "--method", "random", "--sparsity", "0.3", "-o", "x.json")
    )
    assert "local checkpoint" in line
    half = invoke("train-policy", str(tiny_llava), "--pope-dir", str(real["test"]))
    assert "pass --sqa-dir too" in one_line_error(half)


# -- content hashes -------------------------------------------------------------------------------------------------
def test_data_key_follows_content_not_path_or_mtime(real, dev, tmp_path):
    def key(pope: Path, images: Path, sqa_root: Path) -> str:
        data = DataSource(pope=pope, pope_images=images, sqa=sqa_root, split="val")
        return data_key(data, load_benchmark("all", "val", None, data))

    original = key(dev, real["images"], real["sqa"])
    assert original.startswith("content-")
    moved = tmp_path / "moved"
    shutil.copytree(dev, moved / "pope")
    shutil.copytree(real["images"], moved / "images")
    shutil.copytree(real["sqa"], moved / "sqa")
    for path in (moved / "pope").iterdir():
        os.utime(path, (1_000_000, 1_000_000))
    assert key(moved / "pope", moved / "images", moved / "sqa") == original
    popular = moved / "pope" / "dev_pope_popular.json"
    popular.write_text(popular.read_text().replace('"label": "no"', '"label": "yes"', 1))
    relabelled = key(moved / "pope", moved / "images", moved / "sqa")
    assert relabelled != original
    image = next((moved / "images").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")  # another image file under the same name
    assert key(moved / "pope", moved / "images", moved / "sqa") not in (original, relabelled)
    assert data_key(None, {}) == data_key(DataSource(shapesworld=True), {}) == f"shapesworld-v{data_build.VERSION}"


# -- a real checkpoint on the user's data ---------------------------------------------------------------------------
def test_a_local_checkpoint_calibrates_on_user_pope_files_stored_by_content(real, dev, tiny_llava, tmp_path):
    from hipp_core.api import calibrate_model

    data = DataSource(pope=dev, pope_images=real["images"], test_pope=(real["test"],))
    features, cached = calibrate_model(str(tiny_llava), samples=6, data=data)
    assert features.samples == 6 and not cached and len(features.v_attn) == 2
    copy = tmp_path / "copy"
    shutil.copytree(dev, copy)
    again, cached = calibrate_model(str(tiny_llava), samples=6, data=DataSource(pope=copy, pope_images=real["images"]))
    assert cached and again.v_attn == features.v_attn, "the same questions elsewhere are the same calibration"
    result = invoke(
        "calibrate",
        str(tiny_llava),
        "--samples",
        "6",
        "--pope-dir",
        str(dev),
        "--pope-images",
        str(real["images"]),
        "--test-pope",
        str(real["test"]),
    )
    assert result.returncode == 0 and "read from the plan store cache" in result.output


def test_a_policy_trained_on_user_data_records_it_and_plans_without_data_options(real, dev, tiny_llava):
    from hipp_core.api import planner, train_policy
    from hipp_core.grpo import GRPOConfig

    data = DataSource(dev, real["images"], None, real["sqa"], split="val", test_pope=(real["test"],))
    config = GRPOConfig(iters=1, group_size=2, prefs_per_iter=2, fixed_budget_groups=1, limit=4)
    record = train_policy(str(tiny_llava), config=config, data=data, samples=6)
    assert record.config["split"] == "val" and record.config["data"].startswith("content-")
    assert record.config["calibration"].startswith("pope-calib:content-") and record.config["calibration"].endswith(
        ":n6"
    )
    plans = planner(str(tiny_llava))  # no data options: the policy brings the calibration it was trained on
    assert plans.trained and plans.policy_id == record.policy_id and plans.features.samples == 6
    blueprint = plans.blueprint((0.2, 0.7, 0.1), 0.3)
    assert abs(blueprint.achieved - 0.3) < 0.1


# -- the pipeline of a real checkpoint: tuned, recovered and reported on the user's data ----------------------------
def pipeline_args(tiny_llava, real, dev, out: Path) -> list[str]:
    """`hipp pipeline` on a local checkpoint with the user's dev set, ScienceQA val, and the POPE test folder."""
    args = ["pipeline", str(tiny_llava), "--pref", "0.2,0.7,0.1", "--sparsity", "0.3", "--iters", "1", "-o", str(out)]
    return args + ["--pope-dir", str(dev), "--pope-images", str(real["images"]), "--sqa-dir", str(real["sqa"])]


def instruction_file(real, folder: Path) -> Path:
    """A two-item LLaVA-format instruction file on a training image (not one the test file asks about)."""
    folder.mkdir(exist_ok=True)
    shutil.copy(real["images"] / name(1), folder / name(1))
    seen = [{"from": "human", "value": "<image>\nIs there a dog in the image?"}, {"from": "gpt", "value": "Yes"}]
    text = [{"from": "human", "value": "Say no."}, {"from": "gpt", "value": "No"}]
    items = [{"id": "a", "image": name(1), "conversations": seen}, {"id": "b", "conversations": text}]
    path = folder / "instruct.json"
    path.write_text(json.dumps(items))
    return path


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            [],
            (
                "your own POPE data needs the POPE test files results are reported on: pass --test-pope FILE_OR_DIR "
                "(and --test-pope-images DIR when the images are not in images/ beside it)"
            ),
        ),
        (
            ["--test-pope", "TEST", "--test-pope", "TEST"],
            (
                "results are reported on one POPE test file or folder, got 2 --test-pope entries; put the test files "
                "in one folder and pass that"
            ),
        ),
        (
            ["--test-pope", "TEST", "--test-pope-images", "IMAGES"],
            (
                "{spec} is a local checkpoint tuned on your own data, so its LoRA recovery must not train on "
                "ShapesWorld: pass --recover-data FILE, a LLaVA-format instruction file"
            ),
        ),
    ],
)
def test_a_real_pipeline_without_its_test_files_or_instructions_is_refused_before_anything(
    real, dev, tiny_llava, tmp_path, extra, expected
):
    from plan_store import default_store_path

    out = tmp_path / "out"
    extra = [{"TEST": str(real["test"]), "IMAGES": str(real["images"])}.get(x, x) for x in extra]
    line = one_line_error(invoke(*pipeline_args(tiny_llava, real, dev, out), *extra))
    assert line == "error: " + expected.format(spec=tiny_llava)
    assert not out.exists() and not default_store_path().exists(), "nothing is computed or stored before a refusal"


def test_a_real_pipeline_scores_on_the_test_files_and_recovers_on_the_instructions(real, dev, tiny_llava, tmp_path):
    import re

    from hipp_core.data.source import SHAPESWORLD_KEY
    from hipp_core.evaluation.stored import bench_key, eval_key
    from hipp_core.models.loading import load_model
    from hipp_core.recover import data_key as instructions_key
    from hipp_core.recover import read_recovery
    from plan_store import DENSE_PLAN_ID, PlanStore

    instructions = instruction_file(real, tmp_path / "instruct")
    test = ["--test-pope", str(real["test"]), "--test-pope-images", str(real["images"])]
    args = pipeline_args(tiny_llava, real, dev, tmp_path / "out")
    result = invoke(*args, *test, "--recover-data", str(instructions), "--steps", "2", "--limit", "2")
    assert result.returncode == 0, result.output
    # The test folder has only POPE's random category: the others show as missing, not as a crash.
    assert re.search(r"dense\s+│\s+0%\s+│\s+\d\.\d{3}\s+│\s+-\s+│\s+-\s+│\s+\d\.\d{3}", result.stdout), result.stdout

    reported = DataSource(pope=real["test"], pope_images=real["images"], sqa=real["sqa"], split="test")
    content = data_key(reported, load_benchmark("all", "test", 2, reported))
    assert content.startswith("content-") and content != SHAPESWORLD_KEY
    store, model_id = PlanStore(), load_model(str(tiny_llava)).model_id
    dense = store.get_evaluation(
        eval_key(model_id, DENSE_PLAN_ID, bench_key("all", True, content), "test", 2, "logits", "")
    )
    assert dense is not None and dense.sample_count > 0, "the dense model is scored on the test files"
    plan_id = re.search(r"plan (\w+) \(preference", result.stdout).group(1)
    stored = {e.key.mode: e.key.bench for e in store.plan_evaluations(plan_id) if e.key.split == "test"}
    assert set(stored) == {"physical", "recovered"}
    assert all(bench.startswith(f"all:{content}:") for bench in stored.values()), stored
    artifact = next(a for a in store.list_artifacts(plan_id) if a.kind == "recovered")
    assert read_recovery(Path(artifact.path))["data"].endswith(f"({instructions_key(instructions)})")


def test_recover_scores_before_and_after_on_the_test_files_it_is_given(real, tiny_llava, tmp_path):
    """`hipp recover` with eval's data options reports the pruned and recovered models on those files, stored
    under their content key (not ShapesWorld test's)."""
    from hipp_core.api import read_plan
    from plan_store import PlanStore

    blueprint_file = tmp_path / "plan.json"
    planning = ["--method", "uniform", "--sparsity", "0.3", "--shapesworld", "-o", str(blueprint_file)]
    result = invoke("plan", "baseline", str(tiny_llava), *planning)
    assert result.returncode == 0, result.output
    instructions = instruction_file(real, tmp_path / "instruct")
    own = ["--pope-dir", str(real["test"]), "--pope-images", str(real["images"]), "--sqa-dir", str(real["sqa"])]
    args = ["recover", str(tiny_llava), "--plan", str(blueprint_file), "--data", str(instructions), "--steps", "1"]
    result = invoke(*args, *own, "--limit", "2")
    assert result.returncode == 0, result.output
    assert "your test data" in result.stdout

    reported = DataSource(pope=real["test"], pope_images=real["images"], sqa=real["sqa"], split="test")
    content = data_key(reported, load_benchmark("all", "test", 2, reported))
    plan_id = read_plan(blueprint_file).plan_id
    stored = {e.key.mode: e.key.bench for e in PlanStore().plan_evaluations(plan_id) if e.key.split == "test"}
    assert set(stored) == {"physical", "recovered"}
    assert all(bench.startswith(f"all:{content}:") for bench in stored.values()), stored


# -- the dashboard's jobs on the user's data ------------------------------------------------------------------------
def job_data(real, dev, **more) -> dict:
    """The tuning data as Home keeps it and the jobs take it: the dev set, its images, the POPE test folder."""
    return {"pope": str(dev), "pope_images": str(real["images"]), "test_pope": [str(real["test"])], **more}


def test_a_local_checkpoints_calibrate_job_runs_on_the_chosen_data(real, dev, tiny_llava, tmp_path):
    from hipp_core import job_runner, jobs
    from hipp_core.api import calibrate_model
    from plan_store import PlanStore

    store, spec = PlanStore(), str(tiny_llava)
    with pytest.raises(HippError, match="local checkpoint, so its calibration must come from your own data"):
        jobs.submit("calibrate", {"spec": spec, "samples": 6}, store)
    params = jobs.kind("calibrate").check({"spec": spec, "samples": 6, "data": job_data(real, dev)}, store)
    job_id = store.create_job("calibrate", params)
    assert job_runner.run_job(job_id, store) == "done", store.get_job(job_id).error
    data = DataSource(pope=dev, pope_images=real["images"], test_pope=(real["test"],))
    features, cached = calibrate_model(spec, samples=6, data=data, store=store)
    assert cached and features.samples == 6, "the job calibrated on the chosen POPE files"

    leaky = tmp_path / "leaky"  # the worker refuses tuning data that shares images with the test files, in one line
    build_pope(real["instances"], leaky, PopeBuildConfig(images_count=9))
    params = jobs.kind("calibrate").check({"spec": spec, "samples": 6, "data": job_data(real, leaky)}, store)
    job_id = store.create_job("calibrate", params)
    assert job_runner.run_job(job_id, store) == "failed"
    assert "share 3 image(s) with the test files" in store.get_job(job_id).error


def test_train_policy_and_recover_jobs_hand_the_chosen_data_to_the_api(real, dev, tiny_llava, monkeypatch, tmp_path):
    from types import SimpleNamespace

    from hipp_core import api, job_runner, jobs
    from plan_store import PlanStore

    store, spec, seen = PlanStore(), str(tiny_llava), {}
    monkeypatch.setattr(
        api, "train_policy", lambda spec, **kw: seen.update(kw) or SimpleNamespace(policy_id="p", curve=[])
    )
    raw = job_data(real, dev, sqa=str(real["sqa"]), split="minival")
    job_id = store.create_job("train-policy", jobs.kind("train-policy").check({"spec": spec, "data": raw}, store))
    assert job_runner.run_job(job_id, store) == "done", store.get_job(job_id).error
    expected = DataSource(dev, real["images"], None, real["sqa"], split="minival", test_pope=(real["test"],))
    assert seen["data"] == expected

    bp = api.plan_baseline(spec, "uniform", 0.3, data=DataSource(shapesworld=True), store=store)
    plan_id = store.put_plan(api.plan_draft(bp)).plan_id
    untested = {"pope": str(dev), "pope_images": str(real["images"])}
    with pytest.raises(HippError, match="your own POPE data needs the POPE test files"):
        jobs.kind("recover").check({"spec": spec, "plan_id": plan_id, "data": untested}, store)
    score = SimpleNamespace(pope_balanced_accuracy=0.5)
    fake = lambda spec, blueprint, **kw: (
        seen.update(kw) or SimpleNamespace(steps=1, before=score, after=score, notices=[])
    )
    monkeypatch.setattr(api, "recover", fake)
    params = {"spec": spec, "plan_id": plan_id, "steps": 1, "limit": 2, "data": raw}
    with pytest.raises(HippError, match="must not train on ShapesWorld: name its LLaVA-format instruction file"):
        jobs.kind("recover").check(params, store)  # a local checkpoint on its own data never tunes on toy shapes
    instructions = instruction_file(real, tmp_path / "instruct")
    job_id = store.create_job(
        "recover", jobs.kind("recover").check(params | {"instructions": str(instructions)}, store)
    )
    assert job_runner.run_job(job_id, store) == "done", store.get_job(job_id).error
    assert seen["data"] == instructions, "recovery trains on the named instruction file"
    assert seen["eval_data"] == expected.report_source(), "recovery is scored on the chosen test files"
    assert seen["eval_data"].pope == real["test"] and seen["eval_data"].split == "test"


def test_evaluate_jobs_read_the_chosen_data_dev_beside_the_rewards_and_test_on_the_test_files(real, dev, tiny_llava):
    from hipp_core import api, job_runner, jobs
    from plan_store import PlanStore

    store, spec = PlanStore(), str(tiny_llava)
    raw = job_data(real, dev, sqa=str(real["sqa"]), split="val", test_pope_images=str(real["images"]))
    with pytest.raises(HippError, match="ScienceQA questions of your own are needed for the evaluation"):
        jobs.kind("evaluate").check({"spec": spec, "data": job_data(real, dev)}, store)  # never half ShapesWorld
    with pytest.raises(HippError, match=r"a dev set \(the tuning files, ScienceQA val\) and a test set .* not 'calib'"):
        jobs.kind("evaluate").check({"spec": spec, "split": "calib", "data": raw}, store)

    def run(split: str) -> str:
        params = jobs.kind("evaluate").check({"spec": spec, "split": split, "limit": 4, "data": raw}, store)
        job_id = store.create_job("evaluate", params)
        assert job_runner.run_job(job_id, store) == "done", store.get_job(job_id).error
        return store.get_job(job_id).message

    assert run("dev").startswith(f"dense model on dev (POPE {dev.name}, ScienceQA val): POPE balanced accuracy")
    data = DataSource(
        dev, real["images"], None, real["sqa"], split="val", test_pope=(real["test"],), test_pope_images=real["images"]
    )
    rewards = api.make_evaluator(spec, "val", 4, store, data=data)
    assert rewards.evaluate([None])[0].cached, "a dev evaluation lands where the policy's rewards look for it"
    assert run("test").startswith(f"dense model on test (POPE {real['test'].name}, ScienceQA test): POPE")
    test = api.evaluation_options(data.report_source())
    again = api.evaluate_model(spec, "all", limit=4, image_free=False, store=store, device="cpu", **test)
    assert again.cached, "the test evaluation read the --test-pope files and ScienceQA test"
