"""One coherent progress figure for a job made of several pieces of work.

The library reports progress per stage, `(stage, done, total)`: an evaluation reports `pope random`, `pope popular`,
..., `sqa` one after the other, each counting from 0; a recovery evaluates before and after its LoRA steps under the
same stage names. Shown as they come, a bar jumps back at every stage and "pope: 160/900" does not say whether it is
the first or the last pass. A job therefore declares up front the steps it expects (`Step`: stage, phase, expected
count, weight) and a `Tracker` turns each report into the job's overall fraction and a label that names the phase
and the category ("before recovery · POPE popular: 160/300"). Steps the work skips (an evaluation found in the store)
are jumped over; stages declared inside a step (the plans scored in one GRPO iteration) refine it.

`describe` is the other end: what a page shows for a stored job (overall percentage, label, time left).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.benchmarks import ImageFree
from hipp_core.evaluation.engine import stage_name


@dataclass(frozen=True)
class Step:
    stage: str  # the stage name the library reports this work under
    phase: str  # the part of the job it belongs to ("before recovery"); "" when the job has one part
    total: int  # the count it is expected to reach (questions, steps, iterations)
    weight: float  # its expected share of the job's time, in any unit (the tracker normalises)
    inner: tuple[str, ...] = ()  # stages reported inside each count of it (the plans scored in a GRPO iteration)


def evaluation_steps(tasks: Mapping[str, Mapping[str, Sequence]], image_free: bool, phase: str = "") -> list[Step]:
    """The steps of one `engine.evaluate` over `tasks` (benchmark -> group -> items), in the order it runs them,
    each weighted by its number of questions."""
    steps = []
    for name, groups in tasks.items():
        bench = benchmarks.get(name)
        for asked in (bench, ImageFree(bench)) if image_free else (bench,):
            steps += [Step(stage_name(asked.name, g), phase, len(items), len(items)) for g, items in groups.items()]
    return steps


STAGE_LABELS = {  # the library's other stages; a benchmark's stages are named by its `label`
    "GRPO": "GRPO iteration",
    "plans": "plans scored",
    "recover": "LoRA step",
    "calibrate": "calibration questions",
}


def stage_label(stage: str) -> str:
    """`pope_free adversarial` -> `POPE adversarial, blank image`; unknown stages as they are."""
    head, _, group = stage.partition(" ")
    free = head.endswith("_free")
    head = head.removesuffix("_free")
    label = benchmarks.get(head).label if head in benchmarks.names() else STAGE_LABELS.get(head, head)
    text = " ".join(part for part in (label, group) if part)
    return f"{text}, blank image" if free else text


class Tracker:
    """Overall fraction and label of a job from its stage reports; see the module docstring."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        weights = [max(0.0, s.weight) for s in self.steps]
        total = sum(weights) or 1.0
        self.starts = [sum(weights[:i]) / total for i in range(len(weights))]
        self.shares = [w / total for w in weights]
        self.current = -1  # index of the step last reported
        self.done = 0  # its last count
        self.fraction = 0.0

    def update(self, stage: str, done: int, total: int) -> tuple[float, str]:
        """The job's overall fraction (never decreasing) and the label for one `(stage, done, total)` report."""
        total = max(total, 1)
        if not self.steps:  # a job that declared nothing: each stage's own fraction, as reported
            return min(1.0, max(0.0, done / total)), f"{stage_label(stage)}: {done}/{total}"
        index = self._match(stage, done)
        if index is not None:
            self.current, self.done = index, done
            step = self.steps[index]
            fraction = self.starts[index] + self.shares[index] * min(1.0, done / total)
            label = self._label(step.phase, f"{stage_label(stage)}: {done}/{total}")
        else:
            fraction, label = self._inner(stage, done, total)
        self.fraction = max(self.fraction, min(1.0, fraction))
        return self.fraction, label

    def _match(self, stage: str, done: int) -> int | None:
        """The declared step this report belongs to: the current one while its count grows, else the next one with
        this stage name (a count that starts again is the next pass, e.g. the evaluation after recovery)."""
        if 0 <= self.current and self.steps[self.current].stage == stage and done >= self.done:
            return self.current
        return next((i for i in range(self.current + 1, len(self.steps)) if self.steps[i].stage == stage), None)

    def _inner(self, stage: str, done: int, total: int) -> tuple[float, str]:
        """A stage reported inside a declared step (`Step.inner`) moves the fraction between that step's counts:
        the current step while it is unfinished, else the next step that declares it. Any other stage only
        relabels."""
        index = self.current
        if not (0 <= index and stage in self.steps[index].inner and self.done < self.steps[index].total):
            following = range(self.current + 1, len(self.steps))
            index = next((i for i in following if stage in self.steps[i].inner), None)
            if index is None:
                return self.fraction, f"{stage_label(stage)}: {done}/{total}"
            self.current, self.done = index, 0
        step = self.steps[index]
        within = (self.done + min(1.0, done / total)) / max(step.total, 1)
        fraction = self.starts[index] + self.shares[index] * min(1.0, within)
        outer = f"{stage_label(step.stage)} {self.done + 1}/{step.total}"
        return fraction, self._label(step.phase, f"{outer} · {stage_label(stage)}: {done}/{total}")

    @staticmethod
    def _label(phase: str, text: str) -> str:
        return f"{phase} · {text}" if phase else text


# -- what a page shows -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobProgress:
    fraction: float  # overall, 0..1
    label: str  # phase and category as the worker last reported them, or the job's status
    seconds_left: float | None  # None until there is enough to go on

    @property
    def text(self) -> str:
        left = f" · {format_seconds(self.seconds_left)} left" if self.seconds_left is not None else ""
        return f"{self.fraction:.0%} · {self.label}{left}"


MIN_FRACTION_FOR_ETA = 0.02  # below this the rate is mostly model loading: a time left would mislead
MIN_SECONDS_FOR_ETA = 3.0


def describe(status: str, progress: float, message: str | None, started_at: datetime | None, now=None) -> JobProgress:
    """Overall percentage, label and time left of a stored job; the time left assumes the rate so far holds."""
    now = now or datetime.now(UTC)
    fraction = min(1.0, max(0.0, float(progress or 0.0)))
    label = message or status
    if status == "queued":
        return JobProgress(0.0, "queued, waiting for its worker", None)
    seconds_left = None
    if status == "running" and started_at is not None:
        elapsed = (now - started_at).total_seconds()
        if fraction >= MIN_FRACTION_FOR_ETA and elapsed >= MIN_SECONDS_FOR_ETA and fraction < 1.0:
            seconds_left = elapsed * (1.0 - fraction) / fraction
    return JobProgress(fraction, label, seconds_left)


def format_seconds(seconds: float) -> str:
    """`about 40 s`, `about 3 min 20 s`, `about 1 h 5 min`: rounded, since it is an estimate."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"about {max(5, round(seconds / 5) * 5)} s"
    if seconds < 600:
        minutes, secs = divmod(round(seconds / 10) * 10, 60)
        return f"about {minutes} min {secs} s" if secs else f"about {minutes} min"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"about {hours} h {minutes} min"
