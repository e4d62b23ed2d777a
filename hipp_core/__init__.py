"""HiPP-Prune: preference-conditioned structured pruning of vision-language models.

`import hipp_core` stays light (the CLI's start-up and the dashboard import it): `load_pruned` pulls in torch and
transformers only when first used.
"""

__all__ = ["load_pruned"]


def __getattr__(name: str):
    if name == "load_pruned":
        from hipp_core.export import load_pruned

        return load_pruned
    raise AttributeError(f"module 'hipp_core' has no attribute {name!r}")
