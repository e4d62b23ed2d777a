"""The benchmark registry: one module per benchmark (POPE, ScienceQA, MME), each implementing `base.Benchmark`.

Adding a benchmark is one module here and its line below."""

from hipp_core.evaluation.benchmarks import mme, pope, sqa  # noqa: F401  (each registers itself)
from hipp_core.evaluation.benchmarks.base import (  # noqa: F401
    WHOLE,
    Benchmark,
    ImageFree,
    Question,
    embedded_names,
    flatten,
    get,
    names,
    select,
    unflatten,
)
