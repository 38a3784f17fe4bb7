"""Quantisation choice, NF4 through bitsandbytes on the CPU, and dtype-safe vision input."""

from __future__ import annotations

import pytest
import torch

from inference.engine.inputs import Message
from inference.engine.loading import choose_quantization, load_model, vision_dtype_device
from inference.engine.prompting import batch_inputs, place_inputs

GIB = 1024**3


def test_auto_without_cuda_says_what_it_chose_and_why():
    choice = choose_quantization("auto", cuda_free_bytes=None, weights_bf16_bytes=18 * GIB)
    assert choice.quantization == "fp32"
    assert "no CUDA GPU" in choice.reason and "fp32" in choice.reason


@pytest.mark.parametrize(
    ("free", "bf16_supported", "expected"),
    [
        (80 * GIB, True, "bf16"),  # a 9B model in bf16 fits an 80 GB card
        (80 * GIB, False, "fp16"),  # pre-Ampere cards have no bf16
        (22 * GIB, True, "nf4"),  # a 24 GB card: the seed deployments' choice
        (2 * GIB, True, "nf4"),  # nothing fits: the smallest is tried, and the reason says so
    ],
)
def test_auto_with_cuda_chooses_from_free_memory(free, bf16_supported, expected):
    choice = choose_quantization(
        "auto", cuda_free_bytes=free, weights_bf16_bytes=18 * GIB, bf16_supported=bf16_supported
    )
    assert choice.quantization == expected
    assert f"{free / GIB:.1f} GiB" in choice.reason


def test_an_explicit_choice_is_kept():
    assert choose_quantization("int8", cuda_free_bytes=None, weights_bf16_bytes=1).quantization == "int8"


@pytest.fixture(scope="module")
def nf4_model(demo_model_dir):
    return load_model(demo_model_dir, quantization="nf4")


def test_nf4_quantises_the_linear_layers_with_double_quantisation(nf4_model):
    import bitsandbytes as bnb

    quantised = [m for m in nf4_model.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised, "no layer was quantised"
    state = quantised[0].weight.quant_state
    assert state.quant_type == "nf4"
    assert state.nested  # double quantisation: the scales are quantised too
    assert nf4_model.quantization == "nf4"


def test_pixel_values_follow_the_vision_towers_real_dtype(nf4_model, loaded_model, red_image):
    dtype, device = vision_dtype_device(nf4_model.model)
    assert dtype == torch.bfloat16  # read from the parameters, not assumed
    assert vision_dtype_device(loaded_model.model)[0] == torch.float32
    inputs = batch_inputs(nf4_model.processor, [(Message("user", "what is this?", images=(red_image,)),)])
    assert inputs["pixel_values"].dtype == torch.float32  # what the image processor produces
    placed = place_inputs(inputs, input_device=device, vision_dtype=dtype, vision_device=device)
    assert placed["pixel_values"].dtype == torch.bfloat16
    assert placed["input_ids"].dtype == torch.int64  # ids and grid sizes are never cast
    assert placed["image_grid_thw"].dtype == torch.int64


def test_the_nf4_model_answers_an_image_question(make_engine, nf4_model, red_image):
    engine = make_engine(nf4_model)
    result = engine.generate([Message("user", "describe", images=(red_image,))], max_new_tokens=4, min_new_tokens=4)
    assert result.usage.completion_tokens == 4
    assert engine.info().quantization == "nf4"
