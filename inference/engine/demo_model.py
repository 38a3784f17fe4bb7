"""A tiny random-weight vision-language model, built from a config with no download.

It exists so that tests, benchmarks and ``make run`` exercise the real loading, prompting,
batching and streaming code paths on a machine without the production weights. Its answers
are noise; ``config.json`` carries ``platform_demo_model: true`` so every UI can say so.

Two architecture families are built (Qwen2.5-VL and Qwen2-VL): they share the processor and
chat template conventions but differ in their vision towers, which is what the dtype-safety
and batching code must cope with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEMO_MARKER = "platform_demo_model"
FAMILIES = ("qwen2_5_vl", "qwen2_vl")
SIZES = ("tiny", "bench")

# Widths stay >= 128 so bitsandbytes NF4 can quantise every linear layer (it refuses smaller).
_SIZE_SHAPES = {
    # layers, hidden, intermediate, heads, kv heads, vision depth, vision hidden
    "tiny": (2, 128, 256, 4, 2, 1, 128),
    # Large enough that bare generation of 128 tokens takes >= 0.5 s on a small CPU.
    "bench": (6, 512, 1408, 8, 4, 2, 256),
}

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen-VL chat template, reduced to what the platform uses: system/user/assistant turns,
# images and text in the order they are given inside a turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A few lines of both languages the platform serves, so the byte-level BPE learns some merges.
_CORPUS = [
    "Describe the image. What is written on the invoice? The total amount is 1,234.56 yuan.",
    "请描述这张图片。发票上的金额是多少？合计金额为壹仟贰佰叁拾肆元伍角陆分。",
    "You are a helpful assistant for the finance department. Answer briefly and precisely.",
    "质量部的检测报告显示产品合格。请提取日期、编号和检验员姓名。",
    "The quick brown fox jumps over the lazy dog. 0123456789 ,.;:!?()[]{}<>-_=+*/\\\"'",
]


@dataclass(frozen=True)
class DemoModelSpec:
    family: str = "qwen2_5_vl"
    size: str = "tiny"
    vocab_size: int = 1024
    seed: int = 0


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",  # noqa: S106 (a token, not a password)
        pad_token="<|endoftext|>",  # noqa: S106
        bos_token=None,
        unk_token=None,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    fast.padding_side = "left"
    fast.model_max_length = 4096
    return fast


def _config(spec: DemoModelSpec, tokenizer):
    layers, hidden, intermediate, heads, kv_heads, vision_depth, vision_hidden = _SIZE_SHAPES[spec.size]
    head_dim = hidden // heads
    # Multimodal RoPE splits head_dim/2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope_section = [half - 2 * (half // 4), half // 4, half // 4]
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    common = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": False,
    }
    if spec.family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        vision_config = {
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 2,
            "num_heads": 4,
            "out_hidden_size": hidden,
            "fullatt_block_indexes": [vision_depth - 1],
            "window_size": 112,
        }
        return Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, **common)
    if spec.family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision_config = {
            "depth": vision_depth,
            "embed_dim": vision_hidden,
            "hidden_size": hidden,
            "num_heads": 4,
            "mlp_ratio": 2,
        }
        return Qwen2VLConfig(text_config=text_config, vision_config=vision_config, **common)
    raise ValueError(f"unknown demo model family {spec.family!r} (choose from {', '.join(FAMILIES)})")


def _processor(spec: DemoModelSpec, tokenizer):
    from transformers import Qwen2VLImageProcessor

    # Small images keep the number of vision tokens (and the test run time) low.
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    try:
        from transformers import Qwen2VLVideoProcessor

        video_processor = Qwen2VLVideoProcessor()
    except ImportError:  # the video processor needs torchvision; images do not
        video_processor = None
    if spec.family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor as Processor
    else:
        from transformers import Qwen2VLProcessor as Processor
    return Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_demo_model(output: Path, spec: DemoModelSpec | None = None) -> Path:
    """Write a loadable model directory (weights, config, tokenizer, processor) to ``output``."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    spec = spec or DemoModelSpec()
    if spec.family not in FAMILIES:
        raise ValueError(f"unknown demo model family {spec.family!r} (choose from {', '.join(FAMILIES)})")
    if spec.size not in SIZES:
        raise ValueError(f"unknown demo model size {spec.size!r} (choose from {', '.join(SIZES)})")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(spec.vocab_size)
    config = _config(spec, tokenizer)
    setattr(config, DEMO_MARKER, True)
    config.platform_demo_description = "demo model — random weights, answers are noise"
    torch.manual_seed(spec.seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        bos_token_id=config.text_config.bos_token_id,
        do_sample=False,
    )
    model.save_pretrained(output)
    _processor(spec, tokenizer).save_pretrained(output)
    (output / "DEMO_MODEL.json").write_text(
        json.dumps({"family": spec.family, "size": spec.size, "seed": spec.seed, "random_weights": True}, indent=2),
        encoding="utf-8",
    )
    return output
