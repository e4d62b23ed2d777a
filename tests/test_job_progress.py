"""One overall progress figure per job: phases and categories named, never running backwards, time left."""

from datetime import UTC, datetime, timedelta

from hipp_core.job_progress import Step, Tracker, describe, evaluation_steps, format_seconds, stage_label


def _tasks(n: int) -> dict[str, dict[str, list]]:
    return {"pope": {c: [0] * n for c in ("random", "popular", "adversarial")}, "sqa": {"": [0] * n}}


def test_evaluation_steps_follow_the_engine_order_and_name_the_blank_image_pass():
    stages = [s.stage for s in evaluation_steps(_tasks(3), image_free=True)]
    assert stages == [
        "pope random",
        "pope popular",
        "pope adversarial",
        "pope_free random",
        "pope_free popular",
        "pope_free adversarial",
        "sqa",
        "sqa_free",
    ]
    assert stage_label("pope_free adversarial") == "POPE adversarial, blank image"
    assert stage_label("sqa") == "ScienceQA"


def test_recovery_progress_is_one_rising_figure_labelled_by_phase_and_category():
    tasks = _tasks(100)
    steps = [
        *evaluation_steps(tasks, False, "before recovery"),
        Step("recover", "LoRA recovery", 10, 400),
        *evaluation_steps(tasks, False, "after recovery"),
    ]
    tracker = Tracker(steps)
    seen = []
    for phase in ("before", "lora", "after"):
        if phase == "lora":
            seen += [tracker.update("recover", i, 10) for i in range(1, 11)]
            continue
        for stage in ("pope random", "pope popular", "pope adversarial", "sqa"):
            seen += [tracker.update(stage, done, 100) for done in (32, 64, 100)]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions), "the overall figure never runs backwards"
    assert abs(fractions[-1] - 1.0) < 1e-9
    assert abs(fractions[11] - 1 / 3) < 1e-9  # 400 of 1,200 weight units: the first evaluation
    assert seen[4][1] == "before recovery · POPE popular: 64/100"
    assert seen[12][1] == "LoRA recovery · LoRA step: 1/10"
    assert seen[-1][1] == "after recovery · ScienceQA: 100/100"


def test_a_skipped_step_is_jumped_over_and_an_inner_stage_refines_its_step():
    tracker = Tracker([Step("calibrate", "calibration", 128, 1), Step("GRPO", "policy training", 4, 99, ("plans",))])
    fraction, label = tracker.update("plans", 8, 16)  # calibration found in the store: no report of it
    assert abs(fraction - (0.01 + 0.99 * 0.5 / 4)) < 1e-9
    assert label == "policy training · GRPO iteration 1/4 · plans scored: 8/16"
    assert abs(tracker.update("GRPO", 1, 4)[0] - (0.01 + 0.99 / 4)) < 1e-9
    assert tracker.update("plans", 4, 16)[1] == "policy training · GRPO iteration 2/4 · plans scored: 4/16"


def test_a_job_without_declared_steps_reports_each_stage_as_before():
    tracker = Tracker([])
    assert tracker.update("export", 0, 1) == (0.0, "export: 0/1")
    assert tracker.update("export", 1, 1) == (1.0, "export: 1/1")


def test_time_left_from_the_rate_so_far_only_once_there_is_something_to_go_on():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start + timedelta(seconds=60)
    assert describe("running", 0.25, "POPE random: 10/40", start, now).seconds_left == 180
    assert describe("running", 0.25, "x", start, now).text == "25% · x · about 3 min left"
    assert describe("running", 0.01, "x", start, now).seconds_left is None
    assert describe("queued", 0.0, None, None, now).label.startswith("queued")
    assert describe("done", 1.0, "finished", start, now).seconds_left is None
    assert [format_seconds(s) for s in (3, 44, 128, 1900, 7300)] == [
        "about 5 s",
        "about 45 s",
        "about 2 min 10 s",
        "about 32 min",
        "about 2 h 2 min",
    ]
