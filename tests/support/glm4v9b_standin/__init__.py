"""A tiny stand-in for GLM-4V-9B (2024), the one supported family with its own Python code.

``build_glm4v9b_standin(output)`` writes a model directory shaped like the published one:
``config.json`` with ``model_type: chatglm`` and an ``auto_map`` naming
``modeling_chatglm.ChatGLMForConditionalGeneration`` for ``AutoModelForCausalLM``, the code
files next to the weights (``configuration_chatglm.py``, ``modeling_chatglm.py``,
``visual.py``), the published config's field names and its image settings
(``vision_config.image_size`` and friends). The code is this platform's own, written for the
tests and much smaller than THUDM's; it keeps the interface the engine depends on. Its
tokenizer is a plain fast tokenizer (the published one is its own tiktoken code): the engine
only asks a tokenizer to encode and decode.

Nothing here is imported by the product: transformers loads the copied files from the model
directory (``trust_remote_code``), exactly as it would load the real model's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from inference.engine.demo_model import GLM_TOKENS

CODE_FILES = ("configuration_chatglm.py", "modeling_chatglm.py", "visual.py")
AUTO_MAP = {
    "AutoConfig": "configuration_chatglm.ChatGLMConfig",
    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
}
# The GLM-4V-9B tokenizer's special tokens: the GLM demo models' list up to the video markers.
SPECIAL_TOKENS = GLM_TOKENS[: GLM_TOKENS.index("<|end_of_video|>") + 1]
END_OF_TURN = ("<|endoftext|>", "<|user|>", "<|observation|>")
# The published model reads 1120-pixel squares; the stand-in 56-pixel ones (4 image tokens + 2).
IMAGE_SIZE = 56


def build_glm4v9b_standin(output: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import GenerationConfig

    from inference.engine.demo_model import DEMO_MARKER, train_tokenizer

    from .configuration_chatglm import ChatGLMConfig
    from .modeling_chatglm import ChatGLMForConditionalGeneration

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(1024, SPECIAL_TOKENS, eos_token=END_OF_TURN[0], pad_token="<|endoftext|>")
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    # The text model's sizes are the config's own (tiny) defaults; the vocabulary is the tokenizer's.
    config = ChatGLMConfig(
        padded_vocab_size=len(tokenizer),
        vision_config={
            "hidden_size": 128,
            "image_size": IMAGE_SIZE,
            "in_channels": 3,
            "intermediate_size": 256,
            "layer_norm_eps": 1e-6,
            "num_heads": 4,
            "num_hidden_layers": 1,
            "num_positions": (IMAGE_SIZE // 14) ** 2 + 1,
            "patch_size": 14,
            "scaling_factor": 8,
        },
        boi_token_id=ids["<|begin_of_image|>"],
        eoi_token_id=ids["<|end_of_image|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids[token] for token in END_OF_TURN],
        tie_word_embeddings=False,
    )
    config.auto_map = dict(AUTO_MAP)
    config.architectures = ["ChatGLMForConditionalGeneration"]
    setattr(config, DEMO_MARKER, True)
    torch.manual_seed(seed)
    model = ChatGLMForConditionalGeneration(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids[token] for token in END_OF_TURN], pad_token_id=ids["<|endoftext|>"], do_sample=False
    )
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    here = Path(__file__).parent
    for name in CODE_FILES:
        shutil.copyfile(here / name, output / name)
    (output / "DEMO_MODEL.json").write_text(
        json.dumps({"family": "chatglm", "stand_in_for": "GLM-4V-9B", "seed": seed, "random_weights": True}),
        encoding="utf-8",
    )
    return output
