"""A real word-level tokenizer for the embedded models, saved and loaded like any Hugging Face tokenizer.

The vocabulary is every word the ShapesWorld prompts, answers and chat templates can produce, enumerated
deterministically, so a retrain reproduces the same ids.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hipp_core.data.prompts import CAPTION_PROMPT, LETTERS, pope_prompt, sqa_prompt
from hipp_core.data.questions import IMAGE_KINDS, TEXT_KINDS, multiple_choice, presence_question
from hipp_core.data.world import OBJECTS, scenes_for_split

SPECIALS = {
    "llava": ["<pad>", "<unk>", "<s>", "</s>", "<image>"],
    "qwen2_5_vl": [
        "<|endoftext|>",
        "<unk>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ],
}

# Chat templates in the style of llava-hf (USER/ASSISTANT) and Qwen2.5-VL (im_start blocks), without system text.
CHAT_TEMPLATES = {
    "llava": (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}USER: "
        "{% else %}ASSISTANT: {% endif %}"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    ),
    "qwen2_5_vl": (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for c in message['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}
TEMPLATE_WORDS = ["USER", "ASSISTANT", ":", "user", "assistant", "system"]


def corpus() -> list[str]:
    """Every kind of text the embedded models read or write, from a fixed sample of scenes."""
    rng = random.Random(0)
    texts = [pope_prompt(presence_question(o)) for o in OBJECTS] + [CAPTION_PROMPT, "yes", "no", *LETTERS]
    stream = scenes_for_split("train", seed=1)
    for _ in range(3000):
        scene = next(stream)
        texts.append(scene.caption())
        for kind in IMAGE_KINDS + TEXT_KINDS:
            q = multiple_choice(scene, kind, rng)
            if q is not None:
                texts.append(sqa_prompt(q.question, q.choices, q.hint))
    return texts


def build_tokenizer(family: str) -> PreTrainedTokenizerFast:
    specials = SPECIALS[family]
    splitter = pre_tokenizers.Whitespace()
    words = set(TEMPLATE_WORDS)
    for text in corpus():
        words.update(w for w, _ in splitter.pre_tokenize_str(text))
    vocab = {tok: i for i, tok in enumerate(specials + sorted(words))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = splitter
    # Registered on the backend so they are never split by the pre-tokenizer.
    backend.add_special_tokens(specials)
    if family == "llava":
        names = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
        extra = {"image_token": "<image>"}
    else:
        names = {"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<unk>"}
        extra = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        chat_template=CHAT_TEMPLATES[family],
        model_max_length=512,
        extra_special_tokens=extra,
        **names,
    )
    return tokenizer
