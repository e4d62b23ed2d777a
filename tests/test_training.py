"""The embedded-model recipe: a killed training run resumes to exactly the weights of an unbroken one."""

from dataclasses import asdict, replace

import pytest
import torch
from transformers import AutoConfig

from hipp_core.data.questions import FACT_VALUES
from hipp_core.models.adapters import adapter_class
from hipp_core.models.train import (
    TrainConfig,
    cell_labels,
    draw_sample,
    drill_batch,
    text_batch,
    train_decoder,
    train_probe,
)
from hipp_core.models.zoo import build_model, build_processor, recipe, shipped_dir, train_embedded, train_info
from tests.conftest import TINY

CFG = TrainConfig(batch_size=4, probe_steps=2, letter_steps=2, text_steps=2, steps=4, warmup=1, checkpoint_every=2)


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

    stages = []

    def die_at_step_7(stage, step, total, metrics):
        stages.append(stage)
        if step == 7:
            raise Killed

    broken = _adapter(arch)
    broken.model.load_state_dict(start)
    with pytest.raises(Killed):
        train_decoder(broken, CFG, tmp_path / "b.pt", die_at_step_7)
    assert stages == ["letters"] * 2 + ["text"] * 2 + ["decoder"] * 3
    saved = torch.load(tmp_path / "b.pt", weights_only=False)
    assert saved["step"] == 6  # past the letter drill and the text phase
    threads = torch.get_num_threads()
    assert saved["time"]["seconds"] > 0 and saved["time"]["threads"] == [threads]
    resumed = _adapter(arch)  # a new process: fresh weights, everything comes from the checkpoint
    spent = train_decoder(resumed, CFG, tmp_path / "b.pt")
    assert spent.earlier == saved["time"]["seconds"] and spent.now > 0, "the killed run's time still counts"
    assert spent.to_json()["threads"] == [threads, threads]
    for (name, a), b in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_samples_mix_tasks_and_cells_are_labelled():
    import random

    from hipp_core.data.world import scenes_for_split

    rng, stream = random.Random(0), scenes_for_split("train", 3)
    samples = [draw_sample(stream, rng, TrainConfig()) for _ in range(400)]
    captions = sum(s.is_caption for s in samples)
    drills = [s for s in samples if s.text.startswith("Which option is the ")]
    assert 0.01 < len(drills) / 400 < 0.1 and all(s.image_scene is None and s.answer in "ABCDE" for s in drills)
    drilled = drill_batch(rng, CFG)
    assert all(s.text.startswith("Which option is the ") and s.image_scene is None for s in drilled)
    texts = text_batch(rng, replace(CFG, batch_size=400))
    recall = [s for s in texts if s.answer not in "ABCDE"]
    assert all(s.image_scene is None for s in texts) and 0.2 < len(recall) / 400 < 0.4
    assert all(s.answer in FACT_VALUES["home"] + FACT_VALUES["material"] for s in recall)
    kinds = ("How many corners", "Which colour do you get", "Context: The", "Where does the", "Which option is the")
    assert all(any(s.text.startswith(k) for s in texts) for k in kinds)  # every text kind, the drill, no image kind
    image_kinds = ("How many objects", "What colour is the", "What shape is the", "Where is the", "Which object is in")
    assert not any(s.text.startswith(image_kinds) for s in texts)
    text_only = sum(s.image_scene is None for s in samples)
    # text-only: half the multiple-choice questions, the letter drills and the one-word fact recall (~0.24)
    assert 0.1 < captions / 400 < 0.3 and 0.15 < text_only / 400 < 0.35
    scene = next(stream)
    labels = cell_labels(scene)
    assert sum(label > 0 for label in labels) == len(scene.objects)


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl"])
def test_prompt_loss_covers_the_prompt_text_only(arch):
    """The prompt term is next-token loss on the prompt's words: never on image placeholders, padding or answers."""
    from hipp_core.data.world import render, scenes_for_split
    from hipp_core.models.train import answer_loss

    adapter = _adapter(arch)
    scene = next(scenes_for_split("train", 3))
    texts = ["Is there a red circle in the image?", "How many corners does a square have?\nA. 4\nB. 3"]
    images, answers = [render(scene), None], ["yes", "A"]
    with torch.no_grad():
        total, qa, cap = answer_loss(adapter, texts, images, answers, [False, False], 0.5, prompt_weight=2.0)
        plain, _, _ = answer_loss(adapter, texts, images, answers, [False, False], 0.5)
        enc = adapter.encode(texts, images, answers)
        logits = adapter.model(**enc.inputs).logits.log_softmax(-1)
    ids, attention = enc.inputs["input_ids"], enc.inputs["attention_mask"]
    image_id = adapter.model.config.image_token_id
    assert (ids == image_id).any() and (attention == 0).any()  # both exclusions are exercised
    losses = []
    for row in range(len(texts)):
        answer_start = int((enc.labels[row] != -100).nonzero()[0])
        for pos in range(1, answer_start):
            if attention[row, pos] and ids[row, pos] != image_id:
                losses.append(-logits[row, pos - 1, ids[row, pos]].item())
    assert plain.item() == pytest.approx(qa.item() + 0.5 * cap.item())
    assert total.item() == pytest.approx(plain.item() + 2.0 * sum(losses) / len(losses), rel=1e-5)


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl"])
def test_retrain_recipe_is_the_one_each_shipped_checkpoint_was_trained_with(arch):
    """`hipp zoo build --retrain` must reproduce the shipped model, so its recipe is the one recorded beside it. A
    setting newer than the record was not used in that training: it must be at its default (which leaves it out)."""
    recorded = train_info(shipped_dir(arch))["train_config"]
    assert asdict(recipe(arch)) == {**asdict(TrainConfig()), **recorded}


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl"])
def test_retrain_builds_the_shipped_architecture(arch):
    """A retrain starts from `build_model`'s default size: it must be the shipped checkpoint's layout, down to the
    head width and rotary base."""
    processor = build_processor(arch)
    built = build_model(arch, processor).config.get_text_config().to_dict()
    shipped = AutoConfig.from_pretrained(shipped_dir(arch)).get_text_config().to_dict()
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size")
    assert {k: built[k] for k in keys} == {k: shipped[k] for k in keys}
    assert built.get("head_dim") == shipped.get("head_dim") and built["rope_parameters"] == shipped["rope_parameters"]


def test_train_embedded_records_where_it_trained_and_saves_a_loadable_model(tmp_path):
    """The record says which device trained the checkpoint (a GPU run is not bit-equal to a CPU one) and the saved
    folder loads back into the weights that were trained."""
    from hipp_core.models.loading import load_model

    info = train_embedded("llava", tmp_path / "llava", CFG, threads=1, device="cpu")
    assert info["device"] == "cpu" and info["train_config"]["steps"] == CFG.steps
    assert train_info(tmp_path / "llava")["device"] == "cpu"
    assert not (tmp_path / ".llava.train.pt").exists(), "the training checkpoint is removed once the model is saved"
    loaded = load_model(str(tmp_path / "llava"))
    assert sum(p.numel() for p in loaded.model.parameters()) == info["parameters"]


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl"])
def test_batch_workers_train_the_same_weights_and_resume(arch, tmp_path):
    """Batches drawn and encoded ahead by worker processes (what a GPU run uses) are the batches of the in-process
    run: the weights after training, and after a kill and a resume with workers, are the same."""
    torch.manual_seed(0)
    inline = _adapter(arch)
    start = {k: v.clone() for k, v in inline.model.state_dict().items()}
    train_decoder(inline, CFG, tmp_path / "a.pt")

    def die_at_step_5(stage, step, total, metrics):
        if step == 5:
            raise Killed

    ahead = _adapter(arch)
    ahead.model.load_state_dict(start)
    with pytest.raises(Killed):
        train_decoder(ahead, CFG, tmp_path / "b.pt", die_at_step_5, workers=2)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["step"] == 4
    resumed = _adapter(arch)
    train_decoder(resumed, CFG, tmp_path / "b.pt", workers=3)
    for (name, a), b in zip(inline.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
