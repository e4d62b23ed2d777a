"""`hipp data build` writes real POPE / ScienceQA formats that our own loaders (and POPE's rules) accept."""

import json

import pytest

from hipp_core.data.build import BuildConfig, build, is_built
from hipp_core.data.pope import load_pope_dir
from hipp_core.data.sqa import load_sqa
from hipp_core.data.world import SPLITS

SMALL = BuildConfig(
    pope={"train": 60, "calib": 30, "dev": 30, "test": 90}, sqa={"train": 40, "calib": 20, "dev": 20, "test": 60}
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build(tmp_path_factory.mktemp("data") / "sw", SMALL)


def test_pope_files_are_real_format_balanced_and_share_images(root):
    pope = load_pope_dir(root / "pope" / "test")
    assert list(pope) == ["random", "popular", "adversarial"]
    for items in pope.values():
        assert len(items) == 90
        assert sum(it.label == "yes" for it in items) == 45
        assert all(it.image.exists() for it in items)
    assert [it.image for it in pope["random"]] == [it.image for it in pope["adversarial"]]
    first = json.loads((root / "pope" / "test" / "shapes_pope_random.json").read_text().splitlines()[0])
    assert set(first) == {"question_id", "image", "text", "label"}


def test_sqa_is_real_format_and_half_needs_the_image(root):
    problems = json.loads((root / "sqa" / "problems.json").read_text())
    splits = json.loads((root / "sqa" / "pid_splits.json").read_text())
    assert sorted(splits) == sorted(SPLITS)
    assert len(problems) == sum(SMALL.sqa.values())
    items = load_sqa(root / "sqa", "test")
    assert len(items) == 60
    with_image = sum(it.image is not None for it in items)
    assert with_image == 30
    assert all(0 <= it.answer < len(it.choices) <= 5 for it in items)


def test_splits_share_no_scene(root):
    def signatures(split):
        lines = (root / "pope" / split / "scenes.jsonl").read_text().splitlines()
        return {json.dumps(json.loads(line)["objects"], sort_keys=True) for line in lines}

    seen = {s: signatures(s) for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not seen[a] & seen[b]


def test_rebuild_is_skipped_and_deterministic(root, tmp_path):
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert is_built(root, SMALL) and build(root, SMALL) == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp
    again = build(tmp_path / "sw2", SMALL)
    for rel in ("pope/dev/shapes_pope_adversarial.json", "sqa/problems.json"):
        assert (again / rel).read_bytes() == (root / rel).read_bytes()
    assert not is_built(root, BuildConfig())


def test_builders_started_together_build_once(tmp_path):
    """`make app` beside `make test` on a fresh machine: both reach the same root; one builds, the other reuses it."""
    from concurrent.futures import ThreadPoolExecutor

    calls: dict[int, int] = {0: 0, 1: 0}

    def run(who: int):
        return build(tmp_path / "sw", SMALL, progress=lambda *_: calls.__setitem__(who, calls[who] + 1))

    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(run, (0, 1)))
    assert roots == [tmp_path / "sw"] * 2 and is_built(roots[0], SMALL)
    assert min(calls.values()) == 0 < max(calls.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sw.lock", "sw"]
