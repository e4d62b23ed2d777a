"""Qwen2.5-VL's processor without its video half.

The stock `Qwen2_5_VLProcessor` insists on a video processor, and that one needs torchvision, which cannot be
installed beside the CPU build of torch 2.13 used here (its C ops do not register). Images are all this tool
feeds the model, so this subclass keeps Qwen's own image and text handling and drops the video attribute.
With torchvision installed, the stock processor is used instead (see `models/adapters.py`).
"""

from __future__ import annotations

from transformers import ProcessorMixin, Qwen2_5_VLProcessor


class Qwen2_5_VLImageProcessorOnly(Qwen2_5_VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self):
        out = super().to_dict()
        out["processor_class"] = "Qwen2_5_VLProcessor"  # the stock class loads it where torchvision exists
        return out
