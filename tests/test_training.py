"""The embedded-model recipe: a killed training run resumes to exactly the weights of an unbroken one."""

import pytest
import torch

from hipp_core.models.adapters import adapter_class
from hipp_core.models.train import TrainConfig, cell_labels, draw_sample, train_decoder, train_probe
from hipp_core.models.zoo import build_model, build_processor
from tests.conftest import TINY

CFG = TrainConfig(batch_size=4, probe_steps=2, steps=4, warmup=1, checkpoint_every=2)


def _adapter(arch):
    processor = build_processor(arch)
    return adapter_class(arch)(build_model(arch, processor, seed=5, size=TINY), processor)


class Killed(Exception):
    pass


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl"])
def test_resume_after_kill_matches_unbroken_run(arch, tmp_path):
    torch.manual_seed(0)
    unbroken = _adapter(arch)
    train_probe(unbroken, CFG)
    start = {k: v.clone() for k, v in unbroken.model.state_dict().items()}
    train_decoder(unbroken, CFG, tmp_path / "a.pt")

    def die_at_step_3(stage, step, total, metrics):
        if step == 3:
            raise Killed

    broken = _adapter(arch)
    broken.model.load_state_dict(start)
    with pytest.raises(Killed):
        train_decoder(broken, CFG, tmp_path / "b.pt", die_at_step_3)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["step"] == 2
    resumed = _adapter(arch)  # a new process: fresh weights, everything comes from the checkpoint
    train_decoder(resumed, CFG, tmp_path / "b.pt")
    for (name, a), b in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_samples_mix_tasks_and_cells_are_labelled():
    import random

    from hipp_core.data.world import scenes_for_split

    rng, stream = random.Random(0), scenes_for_split("train", 3)
    samples = [draw_sample(stream, rng, TrainConfig()) for _ in range(400)]
    captions = sum(s.is_caption for s in samples)
    text_only = sum(s.image_scene is None for s in samples)
    assert 0.1 < captions / 400 < 0.3 and 0.1 < text_only / 400 < 0.25
    scene = next(stream)
    labels = cell_labels(scene)
    assert sum(label > 0 for label in labels) == len(scene.objects)
