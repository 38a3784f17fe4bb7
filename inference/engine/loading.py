"""Loading the model from a local directory: integrity first, then quantisation and device.

Order matters: the manifest is verified before a single byte is handed to transformers, and
``trust_remote_code`` is considered only after the verified manifest matches the pinned hash.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference import offline
from inference.engine.demo_model import DEMO_MARKER
from inference.engine.errors import (
    MANIFEST_PIN_MISMATCH,
    MODEL_DIR_MISSING,
    MODEL_LOAD_FAILED,
    QUANTIZATION_NEEDS_CUDA,
    REMOTE_CODE_REFUSED,
    REMOTE_CODE_UNPINNED,
    ManifestError,
    ModelLoadError,
)
from inference.engine.families import CHATGLM_IMAGES, FAMILIES, Family, family_for_config, model_class
from inference.engine.manifest import VerifiedManifest, manifest_verify

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("auto", "nf4", "int8", "bf16", "fp16", "fp32")
# Headroom over the weights for activations, the KV cache of a batch and CUDA's own context.
_HEADROOM = 1.3
# Bytes per parameter after loading, relative to bf16.
_RELATIVE_SIZE = {"bf16": 1.0, "fp16": 1.0, "int8": 0.55, "nf4": 0.3, "fp32": 2.0}
_VISION_ATTRIBUTES = (
    "visual",
    "model.visual",
    "vision_tower",
    "model.vision_tower",
    "vision_model",
    "model.vision_model",
    "transformer.vision",  # GLM-4V-9B's own code
)


@dataclass(frozen=True)
class QuantizationChoice:
    quantization: str
    reason: str


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    name: str
    family: str
    path: Path
    quantization: str
    quantization_reason: str
    device: str
    manifest_sha256: str
    is_demo: bool
    load_seconds: float
    parameter_count: int
    max_positions: int
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)
    pad_token_id: int = 0
    profile: Family = field(default_factory=lambda: FAMILIES["qwen2_5_vl"])
    image_size: int = 0  # the square side a fixed-size vision tower reads (GLM-4V-9B); 0 = any
    # Positions an image takes in the model's sequence beyond its placeholder ids in the prompt
    # (GLM-4V-9B's code widens three placeholder ids to the image's embeddings); 0 otherwise.
    image_extra_tokens: int = 0

    @property
    def vision_dtype_device(self) -> tuple[Any, Any]:
        return vision_dtype_device(self.model)


def choose_quantization(
    requested: str, *, cuda_free_bytes: int | None, weights_bf16_bytes: int, bf16_supported: bool = True
) -> QuantizationChoice:
    """Resolve ``auto`` from free GPU memory and the model size; explicit choices are kept."""
    if requested != "auto":
        return QuantizationChoice(requested, f"MODEL_QUANTIZATION={requested} was set explicitly")
    if cuda_free_bytes is None:
        return QuantizationChoice(
            "fp32",
            "auto: no CUDA GPU is available, so the model runs on the CPU in fp32 "
            "(bitsandbytes NF4/int8 and half precision are GPU-oriented and slower or unsupported on CPUs)",
        )
    half = "bf16" if bf16_supported else "fp16"
    gib = 1024**3
    for candidate in (half, "nf4"):
        need = weights_bf16_bytes * _RELATIVE_SIZE[candidate] * _HEADROOM
        if need <= cuda_free_bytes:
            return QuantizationChoice(
                candidate,
                f"auto: {candidate} needs about {need / gib:.1f} GiB with headroom and "
                f"{cuda_free_bytes / gib:.1f} GiB of GPU memory is free",
            )
    need = weights_bf16_bytes * _RELATIVE_SIZE["nf4"] * _HEADROOM
    return QuantizationChoice(
        "nf4",
        f"auto: even nf4 needs about {need / gib:.1f} GiB and only {cuda_free_bytes / gib:.1f} GiB is free; "
        "trying nf4 (the smallest) anyway",
    )


def vision_dtype_device(model: Any) -> tuple[Any, Any]:
    """The dtype and device the vision tower really computes in, read from its parameters.

    Quantised layers hold uint8 storage, so the first *floating* parameter is the truth (a
    LayerNorm or the patch embedding); casting pixel values to it avoids the classic
    "Input type (float) and bias type (c10::BFloat16) should be the same" RuntimeError.
    """
    import torch

    tower = None
    for dotted in _VISION_ATTRIBUTES:
        candidate = model
        for part in dotted.split("."):
            candidate = getattr(candidate, part, None)
            if candidate is None:
                break
        if candidate is not None:
            tower = candidate
            break
    for module in (tower, model):
        if module is None:
            continue
        for parameter in module.parameters():
            if parameter.is_floating_point():
                return parameter.dtype, parameter.device
    return torch.float32, torch.device("cpu")


def _weights_bytes(model_dir: Path, config: dict[str, Any]) -> int:
    total = sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) or sum(
        p.stat().st_size for p in model_dir.glob("*.bin")
    )
    stored = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16")
    return total // 2 if "32" in stored else total  # expressed in bf16 bytes


def _bnb_config(quantization: str):
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def load_model(
    model_dir: Path,
    *,
    quantization: str = "auto",
    trust_remote_code: bool = False,
    pinned_manifest_sha256: str = "",
    name: str = "",
) -> LoadedModel:
    """Verify and load the model in ``model_dir``; raise ModelLoadError with a clear message."""
    offline.enforce_offline()
    started = time.perf_counter()
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(MODEL_DIR_MISSING.format(path=model_dir))
    manifest: VerifiedManifest = manifest_verify(model_dir)
    if pinned_manifest_sha256 and pinned_manifest_sha256.lower() != manifest.sha256:
        raise ManifestError(MANIFEST_PIN_MISMATCH.format(actual=manifest.sha256, expected=pinned_manifest_sha256))
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(MODEL_LOAD_FAILED.format(path=model_dir, error=exc)) from exc
    needs_remote_code = bool(config.get("auto_map"))
    if needs_remote_code and not trust_remote_code:
        raise ModelLoadError(REMOTE_CODE_REFUSED.format(path=model_dir))
    if trust_remote_code and not pinned_manifest_sha256:
        raise ModelLoadError(REMOTE_CODE_UNPINNED.format(actual=manifest.sha256))
    # The config decides the class (model_type -> family); a remote-code family's own class is
    # the one its auto_map names for the family's auto class.
    profile = family_for_config(config)

    import torch
    from transformers import AutoProcessor, AutoTokenizer

    cuda = torch.cuda.is_available()
    free = torch.cuda.mem_get_info()[0] if cuda else None
    choice = choose_quantization(
        quantization,
        cuda_free_bytes=free,
        weights_bf16_bytes=_weights_bytes(model_dir, config),
        bf16_supported=bool(cuda and torch.cuda.is_bf16_supported()),
    )
    logger.info("model quantisation: %s (%s)", choice.quantization, choice.reason)
    # Only a remote-code family runs code from the model directory; a native family's class is
    # transformers' own even if its config.json carries an auto_map.
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": profile.remote_code}
    if choice.quantization in ("nf4", "int8"):
        kwargs["quantization_config"] = _bnb_config(choice.quantization)
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = "auto" if cuda else "cpu"
    else:
        kwargs["dtype"] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choice.quantization]
        if cuda:
            kwargs["device_map"] = "auto"
    try:
        # GLM-4V-9B has no processor: its tokenizer is all there is (images are prepared here).
        processor_class = AutoTokenizer if profile.prompt_style == CHATGLM_IMAGES else AutoProcessor
        processor = processor_class.from_pretrained(
            model_dir, local_files_only=True, trust_remote_code=kwargs["trust_remote_code"]
        )
        model = model_class(profile).from_pretrained(model_dir, **kwargs)
    except (ImportError, RuntimeError) as exc:
        if choice.quantization in ("nf4", "int8") and not cuda:
            raise ModelLoadError(QUANTIZATION_NEEDS_CUDA.format(quantization=choice.quantization, error=exc)) from exc
        raise ModelLoadError(MODEL_LOAD_FAILED.format(path=model_dir, error=exc)) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(MODEL_LOAD_FAILED.format(path=model_dir, error=exc)) from exc
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    # Batched prompts must be padded on the left so every row's last position is its own.
    tokenizer.padding_side = "left"
    eos = model.generation_config.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, list | tuple) else ((eos,) if eos is not None else ())
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids = (*eos_ids, tokenizer.eos_token_id)
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    text_config = config.get("text_config") or config
    is_demo = bool(config.get(DEMO_MARKER))
    family = profile.model_type
    image_size = image_extra_tokens = 0
    if profile.prompt_style == CHATGLM_IMAGES:
        vision_config = config["vision_config"]
        image_size = int(vision_config["image_size"])
        # patches, quartered by the tower's 2x2 convolution, framed by begin/end of image,
        # in place of the prompt's three placeholder ids
        image_extra_tokens = (image_size // int(vision_config["patch_size"]) // 2) ** 2 + 2 - 3
    device = str(next(model.parameters()).device)
    return LoadedModel(
        model=model,
        processor=processor,
        name=name or (f"demo-{family}" if is_demo else model_dir.name),
        family=family,
        path=model_dir,
        quantization=choice.quantization,
        quantization_reason=choice.reason,
        device=device,
        manifest_sha256=manifest.sha256,
        is_demo=is_demo,
        load_seconds=time.perf_counter() - started,
        parameter_count=sum(p.numel() for p in model.parameters()),
        max_positions=int(text_config.get("max_position_embeddings") or text_config.get("seq_length") or 4096),
        eos_token_ids=eos_ids,
        pad_token_id=int(pad),
        profile=profile,
        image_size=image_size,
        image_extra_tokens=image_extra_tokens,
    )
