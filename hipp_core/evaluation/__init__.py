"""Evaluation, below the API: the scoring engine (`engine`), stored scoring through the plan store (`stored`) and
the evaluator backends that score many plans (`backends`: in process; `ray_backend`: on Ray workers)."""
