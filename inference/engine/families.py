"""The model families the platform runs, and how each is loaded and prompted.

The loader reads ``model_type`` from ``config.json`` and looks it up here: the answer names the
class that loads the weights and the way prompts and images become model inputs. Nothing is
chosen by trying classes until one loads. A ``model_type`` that is not listed is refused with a
message naming the supported ones: a family runs only once it has been run end to end (the
family matrix, tests/inference/test_families.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.engine.errors import FAMILY_NOT_VISION, FAMILY_REMOTE_CLASS_MISSING, FAMILY_UNSUPPORTED, ModelLoadError
from inference.engine.inputs import MAX_IMAGES

# How a conversation becomes model inputs (inference/engine/prompting.py):
PROCESSOR_TEMPLATE = "processor"  # the processor's own chat template; images as pixel_values + grids
CHATGLM_IMAGES = "chatglm"  # GLM-4V-9B: a GLM prompt with one image placeholder, images as a tensor


@dataclass(frozen=True)
class Family:
    model_type: str
    label: str
    # A class exported by transformers (native code), or, for remote code, the auto class whose
    # entry in the config's ``auto_map`` names the model's own class.
    model_class: str
    remote_code: bool = False
    prompt_style: str = PROCESSOR_TEMPLATE
    # Float tensors fed to the vision tower: cast to its dtype and device.
    image_keys: tuple[str, ...] = ("pixel_values", "pixel_values_videos")
    max_images: int = MAX_IMAGES
    # False when one generate call cannot mix rows with and without an image.
    mixed_image_batches: bool = True
    # False when the engine cannot run the model one decoding step at a time over a shared cache
    # (remote code with its own cache and position handling): requests are served one at a time.
    step_batching: bool = True

    @property
    def loading(self) -> str:
        """A sentence for docs and logs: how this family is loaded."""
        if self.remote_code:
            return f"its own code through {self.model_class} (trust_remote_code, pinned manifest)"
        return f"transformers' {self.model_class}"


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family("qwen2_vl", "Qwen2-VL", "Qwen2VLForConditionalGeneration"),
        Family("qwen2_5_vl", "Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration"),
        Family("qwen3_vl", "Qwen3-VL", "Qwen3VLForConditionalGeneration"),
        Family("glm4v", "GLM-4.1V", "Glm4vForConditionalGeneration"),
        Family("glm46v", "GLM-4.6V", "Glm46VForConditionalGeneration"),
        Family("llava", "LLaVA", "LlavaForConditionalGeneration"),
        Family("idefics3", "Idefics3", "Idefics3ForConditionalGeneration"),
        Family(
            "chatglm",
            "GLM-4V-9B",
            "AutoModelForCausalLM",
            remote_code=True,
            prompt_style=CHATGLM_IMAGES,
            image_keys=("images",),
            # Its code takes one image per conversation and one image tensor per batch row.
            max_images=1,
            mixed_image_batches=False,
            step_batching=False,
        ),
    )
}


def family_for_config(config: dict[str, Any]) -> Family:
    """The family of a model directory's ``config.json``; ModelLoadError if it is not supported."""
    model_type = str(config.get("model_type") or "")
    family = FAMILIES.get(model_type)
    if family is None:
        raise ModelLoadError(
            FAMILY_UNSUPPORTED.format(model_type=model_type or "(none)", supported=", ".join(sorted(FAMILIES)))
        )
    if family.remote_code:
        if not config.get("vision_config"):
            # chatglm is also the model_type of the text-only ChatGLM3 / GLM-4-9B-chat.
            raise ModelLoadError(FAMILY_NOT_VISION.format(model_type=model_type))
        if family.model_class not in (config.get("auto_map") or {}):
            raise ModelLoadError(FAMILY_REMOTE_CLASS_MISSING.format(auto_class=family.model_class))
    return family


def model_class(family: Family) -> Any:
    """The class whose ``from_pretrained`` loads this family."""
    import transformers

    return getattr(transformers, family.model_class)
