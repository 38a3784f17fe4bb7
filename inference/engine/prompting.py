"""Turning messages into model inputs through the processor's own chat template.

Order inside a user turn is images first, then text: with the system instruction as the first
turn, the model reads instruction → image → text, the order the seed deployments found reliable.
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


def place_inputs(inputs: Any, *, input_device: Any, vision_dtype: Any, vision_device: Any) -> dict[str, Any]:
    """Move tensors to where the model expects them; pixel values in the vision tower's dtype.

    Integer tensors (ids, masks, grid sizes) keep their dtype; only floating pixel tensors are
    cast, because a bf16 or 4-bit vision tower fed float32 pixels raises a dtype RuntimeError.
    """
    placed = {}
    for key, value in dict(inputs).items():
        if not hasattr(value, "to"):
            placed[key] = value
        elif key.startswith("pixel_values") and value.is_floating_point():
            placed[key] = value.to(device=vision_device, dtype=vision_dtype)
        else:
            placed[key] = value.to(input_device)
    return placed
