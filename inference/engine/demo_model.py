"""Tiny random-weight vision-language models, built from a config with no download.

They exist so that tests, benchmarks and ``make run`` exercise the real loading, prompting,
batching and streaming code paths on a machine without the production weights. Their answers
are noise; ``config.json`` carries ``platform_demo_model: true`` so every UI can say so.

Each family is built with transformers' own architecture code at a tiny size, and with that
family's own processor classes, special tokens and (reduced) chat template, written locally:

- ``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``: the Qwen-VL turn markers (``<|im_start|>``) and
  ``<|vision_start|><|image_pad|><|vision_end|>``; Qwen3-VL has 16-pixel patches and deepstack.
- ``glm4v`` (GLM-4.1V) and ``glm46v`` (GLM-4.6V): ``[gMASK]<sop>``, ``<|user|>`` /
  ``<|assistant|>`` and ``<|begin_of_image|><|image|><|end_of_image|>``; GLM-4.6V opens the
  answer with an empty ``<think></think>`` (thinking off).
- ``llava`` (LLaVA-1.5: CLIP vision tower, Llama text model): ``USER: <image>\n… ASSISTANT:``.
- ``idefics3`` (SigLIP-style tower, pixel shuffle, Llama text model):
  ``<|im_start|>User:<image>…<end_of_utterance>\nAssistant:``, images not split into tiles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEMO_MARKER = "platform_demo_model"
FAMILIES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "glm4v", "glm46v", "llava", "idefics3")
SIZES = ("tiny", "bench")

# Widths stay >= 128 so bitsandbytes NF4 can quantise every linear layer (it refuses smaller).
_SIZE_SHAPES = {
    # layers, hidden, intermediate, heads, kv heads, vision depth, vision hidden
    "tiny": (2, 128, 256, 4, 2, 1, 128),
    # Large enough that bare generation of 128 tokens takes >= 0.5 s on a small CPU.
    "bench": (6, 512, 1408, 8, 4, 2, 256),
}

# Small images keep the number of vision tokens (and the test run time) low.
_MIN_PIXELS = 56 * 56
_MAX_PIXELS = 112 * 112

_QWEN_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
SPECIAL_TOKENS = _QWEN_TOKENS  # kept for callers of the first demo model

GLM_TOKENS = [
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|image|>",
    "<|video|>",
    "<think>",
    "</think>",
]

_LLAVA_TOKENS = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]
_IDEFICS_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
]

# LLaVA-1.5's template reduced: images first, then text, in each turn.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set prefix = '' %}"
    "{% else %}{% set prefix = message['role'].upper() + ': ' %}{% endif %}{{ prefix }}"
    "{% if message['content'] is string %}{{ message['content'] }} "
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<image>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }} {% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# The Idefics3 template reduced the same way (SmolVLM shares it).
IDEFICS_CHAT_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<image>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

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


def _glm_chat_template(answer_prefix: str) -> str:
    """The GLM-V chat template reduced the same way; ``answer_prefix`` follows ``<|assistant|>``."""
    return (
        "[gMASK]<sop>"
        "{% for message in messages %}"
        "<|{{ message['role'] }}|>\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for content in message['content'] %}"
        "{% if content['type'] == 'image' or 'image' in content %}<|begin_of_image|><|image|><|end_of_image|>"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>" + answer_prefix + "{% endif %}"
    )


def _glm_tokens(answer_start: str) -> _Tokens:
    """A GLM-4.xV demo tokenizer's tokens; ``answer_start`` follows <|assistant|> in its template."""
    return _Tokens(
        special=GLM_TOKENS,
        # GLM ends a turn by starting the next one (<|user|>/<|observation|>) or with <|endoftext|>.
        eos=("<|endoftext|>", "<|user|>", "<|observation|>"),
        pad="<|endoftext|>",
        extra={"image_token": "<|image|>", "video_token": "<|video|>"},
        chat_template=_glm_chat_template(answer_start),
    )


@dataclass(frozen=True)
class _Tokens:
    special: list[str]
    eos: tuple[str, ...]  # end of turn; the first is the tokenizer's eos_token
    pad: str
    extra: dict[str, str]  # named special tokens the processor reads from the tokenizer
    chat_template: str


_FAMILY_TOKENS = {
    "qwen": _Tokens(
        special=_QWEN_TOKENS,
        eos=("<|im_end|>", "<|endoftext|>"),
        pad="<|endoftext|>",
        extra={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        chat_template=CHAT_TEMPLATE,
    ),
    "glm4v": _glm_tokens("\n"),
    "glm46v": _glm_tokens("\n<think></think>\n"),  # GLM-4.6V opens its answer with an empty think
    "llava": _Tokens(
        special=_LLAVA_TOKENS,
        eos=("</s>",),
        pad="<pad>",
        extra={"image_token": "<image>"},
        chat_template=LLAVA_CHAT_TEMPLATE,
    ),
    "idefics": _Tokens(
        special=_IDEFICS_TOKENS,
        eos=("<end_of_utterance>", "<|endoftext|>"),
        pad="<|endoftext|>",
        extra={},
        chat_template=IDEFICS_CHAT_TEMPLATE,
    ),
}


def _family_tokens(family: str) -> _Tokens:
    if family.startswith("qwen"):
        return _FAMILY_TOKENS["qwen"]
    if family == "idefics3":
        return _FAMILY_TOKENS["idefics"]
    return _FAMILY_TOKENS[family]


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


def train_tokenizer(
    vocab_size: int,
    special_tokens: list[str],
    *,
    eos_token: str,
    pad_token: str,
    extra_special_tokens: dict[str, str] | None = None,
):
    """A byte-level BPE tokenizer trained here on a few lines of English and Chinese."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=eos_token,
        pad_token=pad_token,
        bos_token=None,
        unk_token=None,
        extra_special_tokens=extra_special_tokens or {},
    )
    fast.padding_side = "left"
    fast.model_max_length = 4096
    return fast


def _train_tokenizer(spec: DemoModelSpec):
    tokens = _family_tokens(spec.family)
    return train_tokenizer(
        spec.vocab_size,
        tokens.special,
        eos_token=tokens.eos[0],
        pad_token=tokens.pad,
        extra_special_tokens=tokens.extra,
    )


def _text_sizes(spec: DemoModelSpec, tokenizer) -> dict:
    """The language model's sizes and special tokens, common to every family's text config."""
    layers, hidden, intermediate, heads, kv_heads, _, _ = _SIZE_SHAPES[spec.size]
    tokens = _family_tokens(spec.family)
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "eos_token_id": tokenizer.convert_tokens_to_ids(tokens.eos[0]),
        "pad_token_id": tokenizer.convert_tokens_to_ids(tokens.pad),
        "tie_word_embeddings": False,
    }


def _text_config(spec: DemoModelSpec, tokenizer, *, rotary_fraction: float = 1.0, **extra) -> dict:
    _, hidden, _, heads, _, _, _ = _SIZE_SHAPES[spec.size]
    head_dim = hidden // heads
    # Multimodal RoPE splits the rotary frequencies (rotary dim / 2) over (time, height, width).
    half = int(head_dim * rotary_fraction) // 2
    mrope_section = [half - 2 * (half // 4), half // 4, half // 4]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section}
    if rotary_fraction != 1.0:
        rope["partial_rotary_factor"] = rotary_fraction
    return {
        **_text_sizes(spec, tokenizer),
        "rope_parameters": rope,
        **extra,
    }


def _config(spec: DemoModelSpec, tokenizer):
    _, hidden, _, _, _, vision_depth, vision_hidden = _SIZE_SHAPES[spec.size]
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _family_tokens(spec.family).special}
    if spec.family in ("llava", "idefics3"):
        return _llama_based_config(spec, tokenizer, ids)
    if spec.family.startswith("qwen"):
        common = {
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
            "tie_word_embeddings": False,
        }
    else:
        common = {
            "image_token_id": ids["<|image|>"],
            "video_token_id": ids["<|video|>"],
            "image_start_token_id": ids["<|begin_of_image|>"],
            "image_end_token_id": ids["<|end_of_image|>"],
            "video_start_token_id": ids["<|begin_of_video|>"],
            "video_end_token_id": ids["<|end_of_video|>"],
            "tie_word_embeddings": False,
        }
    # The vision-tower sizes Qwen2.5-VL, Qwen3-VL and GLM-4V name alike (Qwen2-VL names its own).
    tower = {
        "depth": vision_depth,
        "hidden_size": vision_hidden,
        "intermediate_size": vision_hidden * 2,
        "num_heads": 4,
        "out_hidden_size": hidden,
    }
    if spec.family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        vision_config = {**tower, "fullatt_block_indexes": [vision_depth - 1], "window_size": 112}
        text = _text_config(spec, tokenizer, bos_token_id=ids["<|endoftext|>"])
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision_config, **common)
    if spec.family == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision_config = {
            "depth": vision_depth,
            "embed_dim": vision_hidden,
            "hidden_size": hidden,
            "num_heads": 4,
            "mlp_ratio": 2,
        }
        text = _text_config(spec, tokenizer, bos_token_id=ids["<|endoftext|>"])
        return Qwen2VLConfig(text_config=text, vision_config=vision_config, **common)
    if spec.family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        _, _, _, heads, _, _, _ = _SIZE_SHAPES[spec.size]
        vision_config = {
            **tower,
            "patch_size": 16,
            # A learnt 8x8 grid of position embeddings, interpolated to each image's grid.
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        }
        text = _text_config(spec, tokenizer, head_dim=hidden // heads, bos_token_id=ids["<|endoftext|>"])
        text["rope_parameters"]["mrope_interleaved"] = True
        return Qwen3VLConfig(text_config=text, vision_config=vision_config, **common)
    if spec.family in ("glm4v", "glm46v"):
        from transformers import Glm4vConfig, Glm46VConfig

        vision_config = {**tower, "image_size": 112, "patch_size": 14}
        # GLM rotates half of each head (partial rotary), hence the smaller mrope sections.
        text = _text_config(spec, tokenizer, rotary_fraction=0.5)
        config_class = Glm4vConfig if spec.family == "glm4v" else Glm46VConfig
        return config_class(text_config=text, vision_config=vision_config, **common)
    raise ValueError(f"unknown demo model family {spec.family!r} (choose from {', '.join(FAMILIES)})")


# LLaVA / Idefics3 read fixed-size squares: 56 pixels in 14-pixel patches.
_SQUARE = 56


def _llama_based_config(spec: DemoModelSpec, tokenizer, ids: dict[str, int]):
    import transformers

    _, hidden, _, _, _, vision_depth, vision_hidden = _SIZE_SHAPES[spec.size]
    text_config = {"model_type": "llama", **_text_sizes(spec, tokenizer)}
    if spec.family == "llava":
        vision_config = {
            "model_type": "clip_vision_model",
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 2,
            # LLaVA reads the features of the second-to-last layer: at least two layers.
            "num_hidden_layers": vision_depth + 1,
            "num_attention_heads": 4,
            "image_size": _SQUARE,
            "patch_size": 14,
            "projection_dim": hidden,
        }
        return transformers.LlavaConfig(
            vision_config=vision_config,
            text_config=text_config,
            image_token_id=ids["<image>"],
            image_seq_length=(_SQUARE // 14) ** 2,
            tie_word_embeddings=False,
        )
    vision_config = {
        "hidden_size": vision_hidden,
        "intermediate_size": vision_hidden * 2,
        "num_hidden_layers": vision_depth,
        "num_attention_heads": 4,
        "image_size": _SQUARE,
        "patch_size": 14,
    }
    return transformers.Idefics3Config(
        vision_config=vision_config,
        text_config=text_config,
        scale_factor=2,
        image_token_id=ids["<image>"],
        tie_word_embeddings=False,
    )


def _llama_based_processor(spec: DemoModelSpec, tokenizer, chat_template: str):
    import transformers

    if spec.family == "llava":
        image_processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": _SQUARE}, crop_size={"height": _SQUARE, "width": _SQUARE}
        )
        return transformers.LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=14,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
            chat_template=chat_template,
        )
    image_processor = transformers.Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": _SQUARE}, max_image_size={"longest_edge": _SQUARE}
    )
    return transformers.Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=(_SQUARE // 14) ** 2 // 4,  # patches after the 2x2 pixel shuffle
        chat_template=chat_template,
    )


def _processor(spec: DemoModelSpec, tokenizer):
    import transformers

    chat_template = _family_tokens(spec.family).chat_template
    if spec.family in ("llava", "idefics3"):
        return _llama_based_processor(spec, tokenizer, chat_template)
    if spec.family.startswith("qwen"):
        patch = 16 if spec.family == "qwen3_vl" else 14
        factor = (patch * 2) ** 2
        image_processor = transformers.Qwen2VLImageProcessor(
            min_pixels=max(_MIN_PIXELS, factor), max_pixels=_MAX_PIXELS if patch == 14 else 128 * 128, patch_size=patch
        )
        names = {
            "qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
            "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
            "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor"),
        }[spec.family]
    else:
        prefix = "Glm4v" if spec.family == "glm4v" else "Glm46V"
        image_processor = getattr(transformers, f"{prefix}ImageProcessor")(
            size={"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}
        )
        names = (f"{prefix}Processor", f"{prefix}VideoProcessor")
    try:
        video_processor = getattr(transformers, names[1])()
    except ImportError:  # the video processor needs torchvision; images do not
        video_processor = None
    return getattr(transformers, names[0])(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
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
    tokenizer = _train_tokenizer(spec)
    config = _config(spec, tokenizer)
    setattr(config, DEMO_MARKER, True)
    config.platform_demo_description = "demo model — random weights, answers are noise"
    torch.manual_seed(spec.seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    tokens = _family_tokens(spec.family)
    eos = [tokenizer.convert_tokens_to_ids(token) for token in tokens.eos]
    pad = tokenizer.convert_tokens_to_ids(tokens.pad)
    model.generation_config = GenerationConfig(
        eos_token_id=eos[0] if spec.family in ("qwen2_vl", "qwen2_5_vl") else eos,
        pad_token_id=pad,
        bos_token_id=getattr(config.text_config, "bos_token_id", None),
        do_sample=False,
    )
    model.save_pretrained(output)
    _processor(spec, tokenizer).save_pretrained(output)
    (output / "DEMO_MODEL.json").write_text(
        json.dumps({"family": spec.family, "size": spec.size, "seed": spec.seed, "random_weights": True}, indent=2),
        encoding="utf-8",
    )
    return output
