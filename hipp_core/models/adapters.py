"""One adapter per VLM family: the only place that knows where a family keeps its parts.

Algorithms (training, evaluation, later calibration and pruning) talk to `ModelAdapter`; they never reach into
`model.model.language_model.layers` themselves: one adapter per family holds every attribute path (docs/design.md, Layers of the code).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from hipp_core.blueprint import LayerShape
from hipp_core.errors import HippError
from hipp_core.models.answers import answer_candidates, reply_token_count
from hipp_core.models.device import to_model

_REGISTRY: dict[str, type[ModelAdapter]] = {}


def _user_turn(text: str, with_image: bool) -> dict:
    """One user message of a chat: the image placeholder (if any) before the text, as both families' templates
    expect."""
    return {"role": "user", "content": ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]}


def register(model_type: str) -> Callable[[type[ModelAdapter]], type[ModelAdapter]]:
    def wrap(cls: type[ModelAdapter]) -> type[ModelAdapter]:
        cls.model_type = model_type
        _REGISTRY[model_type] = cls
        return cls

    return wrap


def supported_families() -> list[str]:
    return sorted(_REGISTRY)


def adapter_class(model_type: str) -> type[ModelAdapter]:
    try:
        return _REGISTRY[model_type]
    except KeyError:
        raise HippError(
            f"model type {model_type!r} is not a supported vision-language family; "
            f"supported: {', '.join(supported_families())}"
        ) from None


@dataclass(frozen=True)
class LayerParts:
    """The seven projections of one decoder layer: every prunable weight lives in one of them."""

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    gate: nn.Linear
    up: nn.Linear
    down: nn.Linear


@dataclass
class Encoded:
    """A tokenized batch plus, for training, which positions carry a loss."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor | None = None


class ModelAdapter(ABC):
    model_type: str = ""

    def __init__(self, model: nn.Module, processor) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer

    def clone(self) -> ModelAdapter:
        """An independent copy of the model behind the same processor. `generate` caches a compiled forward on the
        model that is bound to the original model: a copy that kept it would decode with the original's weights,
        so the copy drops it and compiles its own when asked."""
        model = copy.deepcopy(self.model)
        model.__dict__.pop("_compiled_call", None)
        return type(self)(model, self.processor)

    # -- where things are -------------------------------------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        return self.model.model.language_model

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model.layers

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id

    def layer_shapes(self) -> list[LayerShape]:
        """Each decoder layer's prunable layout, read from the projection modules themselves (not the config), so
        it is right for physically pruned layers and works on the meta device (no weights needed)."""
        shapes = []
        for i, layer in enumerate(self.decoder_layers):
            parts = self.layer_parts(i)
            q, k, v, o, gate, up, down = (parts.q, parts.k, parts.v, parts.o, parts.gate, parts.up, parts.down)
            biased = [{lin.bias is not None for lin in group} for group in ((q, k, v), (gate, up, down))]
            if any(len(flags) > 1 for flags in biased):
                raise HippError(f"decoder layer {i} mixes biased and unbiased q/k/v or MLP projections; unsupported")
            projections = (q, k, v, o, gate, up, down)
            owned = sum(p.numel() for module in projections for p in module.parameters())
            shapes.append(
                LayerShape(
                    hidden=q.in_features,
                    head_dim=layer.self_attn.head_dim,
                    n_heads=q.out_features // layer.self_attn.head_dim,
                    n_kv_heads=k.out_features // layer.self_attn.head_dim,
                    intermediate=gate.out_features,
                    qkv_bias=q.bias is not None,
                    o_bias=o.bias is not None,
                    mlp_bias=down.bias is not None,
                    fixed_params=sum(p.numel() for p in layer.parameters()) - owned,
                )
            )
        return shapes

    def layer_parts(self, i: int) -> LayerParts:
        attn, mlp = self.decoder_layers[i].self_attn, self.decoder_layers[i].mlp
        return LayerParts(attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)

    def replace_layer_parts(self, i: int, parts: LayerParts, kv_groups: int) -> None:
        """Swap in sliced projections. Attention infers its head count from tensor shapes; only the number of
        query heads per KV head (`num_key_value_groups`, read by repeat_kv) must be told (docs/design.md, Facts about the libraries)."""
        attn, mlp = self.decoder_layers[i].self_attn, self.decoder_layers[i].mlp
        attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj = parts.q, parts.k, parts.v, parts.o
        mlp.gate_proj, mlp.up_proj, mlp.down_proj = parts.gate, parts.up, parts.down
        attn.num_key_value_groups = kv_groups

    def stock_head_counts(self) -> tuple[int, ...]:
        """The query-head counts a stock config of this family accepts, ascending: a stock export pads every layer
        to one of them, and equal-count plans keep one of them. Llama configs (LLaVA's decoder) take an explicit
        `head_dim` but still refuse a hidden size that the head count does not divide."""
        hidden = self.decoder_layers[0].self_attn.q_proj.in_features
        return tuple(n for n in range(1, hidden + 1) if hidden % n == 0)

    def rope_positions(self, seq: int, device: torch.device) -> torch.Tensor:
        """Position ids for running one decoder layer on its own (1-D rotary positions)."""
        return torch.arange(seq, device=device)[None]

    def run_layer(self, i: int, hidden: torch.Tensor, layer: nn.Module | None = None) -> torch.Tensor:
        """Decoder layer `i` (or `layer`, a copy of it) on `hidden` [batch, seq, hidden] with full attention: for
        data-free saliency."""
        positions = self.rope_positions(hidden.shape[1], hidden.device)
        cos_sin = self.language_model.rotary_emb(hidden, positions)
        return (layer if layer is not None else self.decoder_layers[i])(hidden, position_embeddings=cos_sin)

    @abstractmethod
    def vision_encoder(self) -> nn.Module:
        """The part trained by the per-cell probe (stage 1) and frozen afterwards."""

    @abstractmethod
    def projector(self) -> nn.Module:
        """The vision-to-language bridge (trained with a higher learning rate in stage 2)."""

    @abstractmethod
    def image_token_states(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Vision features before the projector, one row per image token: [images, tokens, dim]."""

    # -- inputs -----------------------------------------------------------------------------------------------
    def chat_prompt(self, text: str, with_image: bool) -> str:
        return self.processor.apply_chat_template([_user_turn(text, with_image)], add_generation_prompt=True)

    def chat_reply(self, text: str, with_image: bool, answer: str, prompt: str | None = None) -> str:
        """`answer` as the chat template writes the assistant's reply after this question's generation prompt
        (`chat_prompt`, passed as `prompt` when the caller has it), up to and including the end-of-sequence token:
        what training teaches the model to write. Templates put different text between prompt and reply (llava-hf:
        "ASSISTANT: yes", Qwen: "assistant\nyes<|im_end|>"), and the bare answer glued to the prompt would teach a
        SentencePiece model a spelling it never writes ("ASSISTANT:yes", no word boundary). A template that does
        not extend its own prompt gets the bare answer."""
        turns = [_user_turn(text, with_image), {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        prompt = self.chat_prompt(text, with_image) if prompt is None else prompt
        eos = self.tokenizer.eos_token or ""
        written = self.processor.apply_chat_template(turns, add_generation_prompt=False)
        reply = written[len(prompt) :] if written.startswith(prompt) else ""
        if answer not in reply:
            return answer + eos
        end = reply.find(eos, reply.index(answer) + len(answer)) if eos else -1
        return reply[: end + len(eos)] if end >= 0 else reply.rstrip() + eos

    def encode(
        self,
        texts: list[str],
        images: list[Image.Image | None],
        answers: list[str] | None = None,
        padding_side: str = "right",
    ) -> Encoded:
        """Tokenize prompts (and, for training, answers ending in EOS) through the family's own processor, on the
        model's device with pixel values in the model's dtype (`device.to_model`), ready for a forward pass.

        Right padding by default: no real token ever attends to a pad or sees shifted positions. Scoring pads on the
        left, so every row's answer position is the last one, and passes `padded_positions` (see there).
        """
        prompts = [self.chat_prompt(t, img is not None) for t, img in zip(texts, images)]
        if answers is not None:
            replies = [
                self.chat_reply(t, img is not None, a, p) for t, img, a, p in zip(texts, images, answers, prompts)
            ]
        full = prompts if answers is None else [p + r for p, r in zip(prompts, replies)]
        present = [img for img in images if img is not None]
        self.tokenizer.padding_side = padding_side
        inputs = self.processor(
            text=full, images=present or None, return_tensors="pt", padding=True, padding_side=padding_side
        )
        # On the model's device and in its dtype; as the processor made them for a tokenizer-only adapter (no model).
        inputs = dict(inputs) if self.model is None else to_model(dict(inputs), self.model)
        if answers is None:
            return Encoded(inputs)
        labels = torch.full_like(inputs["input_ids"], -100)
        lengths = inputs["attention_mask"].sum(1)
        for i, (prompt, reply) in enumerate(zip(prompts, replies)):
            n = reply_token_count(self.tokenizer, prompt, reply)
            end = int(lengths[i])
            labels[i, end - n : end] = inputs["input_ids"][i, end - n : end]
        return Encoded(inputs, labels)

    def padded_positions(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Extra forward arguments that give a left-padded batch the positions its rows would have unpadded: each
        real token counts from 0 at the row's first real token. Without them the decoder numbers the pads too and
        shifts every rotary position by the row's padding, which changes the logits in the last bits."""
        mask = inputs["attention_mask"]
        return {"position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}

    def answer_token_ids(
        self, text: str, with_image: bool, answers: Sequence[str], any_case: bool = False
    ) -> list[list[int]]:
        """Each answer's candidate ids for logit scoring, as the answer follows this question's chat prompt.

        An answer's first token depends only on where the prompt ends, and every question ends with the chat
        template's generation prompt, so one question's ids serve a whole benchmark.
        """
        return answer_candidates(self.tokenizer, self.chat_prompt(text, with_image), answers, any_case)


@register("llava")
class LlavaAdapter(ModelAdapter):
    def vision_encoder(self) -> nn.Module:
        return self.model.model.vision_tower

    def projector(self) -> nn.Module:
        return self.model.model.multi_modal_projector

    def image_token_states(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.vision_encoder()(inputs["pixel_values"], output_hidden_states=True)
        states = out.hidden_states[self.model.config.vision_feature_layer]
        if self.model.config.vision_feature_select_strategy == "default":
            states = states[:, 1:]  # the CLS token is not an image token
        return states


@register("qwen2_5_vl")
class Qwen25VLAdapter(ModelAdapter):
    def stock_head_counts(self) -> tuple[int, ...]:
        # Qwen2_5_VLAttention computes head_dim = hidden_size // num_attention_heads (an explicit head_dim is
        # ignored), so the count must stay hidden / head_dim: a stock export keeps every query-head slot.
        attn = self.decoder_layers[0].self_attn
        return (attn.q_proj.in_features // attn.head_dim,)

    def rope_positions(self, seq: int, device: torch.device) -> torch.Tensor:
        # Multimodal RoPE takes (temporal, height, width) positions; for text all three are the token index.
        return torch.arange(seq, device=device)[None, None].expand(3, 1, seq)

    def padded_positions(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # With an image, Qwen derives its multimodal (temporal, height, width) positions from `mm_token_type_ids`
        # and the attention mask itself, skipping the pads; without one it would number the pads, so it gets the
        # text positions (expanded to all three axes by the model).
        if inputs.get("image_grid_thw") is not None:
            return {}
        return super().padded_positions(inputs)

    def vision_encoder(self) -> nn.Module:
        return self.model.model.visual

    def projector(self) -> nn.Module:
        return self.model.model.visual.merger

    def image_token_states(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # Qwen's merger is part of `visual` and is what maps patches to image tokens, so the per-token states
        # are the merger's output; the probe trains it together with the tower.
        grid = inputs["image_grid_thw"]
        out = self.vision_encoder()(inputs["pixel_values"], grid_thw=grid)
        per_image = int(grid[0].prod()) // self.vision_encoder().spatial_merge_size ** 2
        return out.pooler_output.reshape(len(grid), per_image, -1)
