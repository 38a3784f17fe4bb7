"""Turning messages into model inputs: the processor's own chat template for the native
families, GLM-4V-9B's prompt and image tensor for its own code.

Order inside a user turn is images first, then text: with the system instruction as the first
turn, the model reads instruction → image → text, the order the seed deployments found reliable
(GLM-4V-9B's published demos had to fix exactly that order, and the image dtype below).
"""

from __future__ import annotations

from typing import Any

from inference.engine.inputs import Message


def conversation(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    turns = []
    for message in messages:
        content: list[dict[str, Any]] = [{"type": "image", "image": image} for image in message.images]
        if message.text:
            content.append({"type": "text", "text": message.text})
        turns.append({"role": message.role, "content": content})
    return turns


def batch_inputs(processor: Any, batch: list[tuple[Message, ...]]) -> Any:
    """Tokenised, left-padded inputs for several conversations at once (a BatchFeature)."""
    return processor.apply_chat_template(
        [conversation(messages) for messages in batch],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": "left"},
    )


# GLM-4V-9B's prompt pieces: one placeholder between the image markers, replaced by the model's
# own code with the image's embeddings; the image normalised with OpenAI CLIP's mean and std.
CHATGLM_PREFIX = "[gMASK]<sop>"
CHATGLM_IMAGE = "<|begin_of_image|><|endoftext|><|end_of_image|>"
CHATGLM_ANSWER = "<|assistant|>"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def chatglm_prompt(messages: tuple[Message, ...]) -> str:
    """``[gMASK]<sop><|system|>\n…<|user|>\n<image>text<|assistant|>``: instruction → image → text."""
    parts = [CHATGLM_PREFIX]
    for message in messages:
        parts.append(f"<|{message.role}|>\n")
        parts.extend(CHATGLM_IMAGE for _ in message.images)
        parts.append(message.text)
    parts.append(CHATGLM_ANSWER)
    return "".join(parts)


def chatglm_image(image: Any, size: int) -> Any:
    """A (3, size, size) float tensor: RGB, bicubic resize to the tower's square, CLIP-normalised."""
    import numpy as np
    import torch
    from PIL import Image

    resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (array - mean) / std


def chatglm_inputs(tokenizer: Any, batch: list[tuple[Message, ...]], *, image_size: int) -> dict[str, Any]:
    """Left-padded ids and, when the rows carry an image, ``images`` (batch, 3, size, size).

    Every row of one call carries an image or none does (the family's ``mixed_image_batches``
    is False, so the generation code never mixes them), and at most one each.
    """
    import torch

    encoded = tokenizer(
        [chatglm_prompt(messages) for messages in batch],
        add_special_tokens=False,
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    inputs = dict(encoded)
    images = [image for messages in batch for message in messages for image in message.images]
    if images:
        inputs["images"] = torch.stack([chatglm_image(image, image_size) for image in images])
    return inputs


def model_inputs(loaded: Any, batch: list[tuple[Message, ...]]) -> Any:
    """The inputs for ``loaded`` (a LoadedModel), in its family's way."""
    from inference.engine.families import CHATGLM_IMAGES

    if loaded.profile.prompt_style == CHATGLM_IMAGES:
        return chatglm_inputs(loaded.processor, batch, image_size=loaded.image_size)
    return batch_inputs(loaded.processor, batch)


def place_inputs(
    inputs: Any,
    *,
    input_device: Any,
    vision_dtype: Any,
    vision_device: Any,
    image_keys: tuple[str, ...] = ("pixel_values", "pixel_values_videos"),
) -> dict[str, Any]:
    """Move tensors to where the model expects them; image tensors in the vision tower's dtype.

    Integer tensors (ids, masks, grid sizes) keep their dtype; only floating image tensors
    (``image_keys``: the family's names for them) are cast, because a bf16 or 4-bit vision
    tower fed float32 pixels raises a dtype RuntimeError.
    """
    placed = {}
    for key, value in dict(inputs).items():
        if not hasattr(value, "to"):
            placed[key] = value
        elif key in image_keys and value.is_floating_point():
            placed[key] = value.to(device=vision_device, dtype=vision_dtype)
        else:
            placed[key] = value.to(input_device)
    return placed
