"""Prompting and generation on two architecture families: images, multi-turn, stop strings, seeds."""

from __future__ import annotations

import pytest

from inference.engine.core import DEMO_LABEL
from inference.engine.demo_model import DEMO_MARKER
from inference.engine.errors import (
    IMAGE_IN_NON_USER,
    IMAGE_INVALID,
    MAX_NEW_TOKENS_INVALID,
    MAX_NEW_TOKENS_OVER_CAP,
    MESSAGES_EMPTY,
    MESSAGES_LAST_NOT_USER,
    SEED_INVALID,
    STOP_INVALID,
    SYSTEM_NOT_FIRST,
    TEMPERATURE_INVALID,
    TOP_P_INVALID,
    InvalidRequest,
)
from inference.engine.inputs import MAX_STOP_LENGTH, MAX_STOP_STRINGS, Message
from inference.engine.prompting import conversation


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl"])
def test_each_family_answers_about_an_image_and_as_text_only(family, loaded_models, make_engine, red_image):
    engine = make_engine(loaded_models[family])
    info = engine.info()
    assert info.family == family and info.is_demo and info.label == DEMO_LABEL
    with_image = engine.generate(
        [Message("system", "Be brief."), Message("user", "What colour?", images=(red_image,))],
        max_new_tokens=5,
        min_new_tokens=5,
    )
    text_only = engine.generate([Message("user", "What colour?")], max_new_tokens=5, min_new_tokens=5)
    assert with_image.usage.completion_tokens == 5 and with_image.text
    assert text_only.usage.completion_tokens == 5
    # The image became vision tokens in the prompt.
    assert with_image.usage.prompt_tokens > text_only.usage.prompt_tokens + 4


def test_the_demo_model_is_marked_in_its_config(demo_model_dir):
    import json

    assert json.loads((demo_model_dir / "config.json").read_text())[DEMO_MARKER] is True


def test_prompt_order_is_instruction_then_image_then_text(loaded_model, red_image):
    messages = (Message("system", "INSTRUCTION"), Message("user", "QUESTION", images=(red_image,)))
    turns = conversation(messages)
    assert [part["type"] for part in turns[1]["content"]] == ["image", "text"]
    rendered = loaded_model.processor.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    assert rendered.index("INSTRUCTION") < rendered.index("<|vision_start|>") < rendered.index("QUESTION")
    assert rendered.endswith("<|im_start|>assistant\n")


def test_multi_turn_keeps_earlier_images(engine, red_image):
    first = Message("user", "Look at this.", images=(red_image,))
    follow_up = [first, Message("assistant", "I see it."), Message("user", "And now?")]
    without_image = [Message("user", "Look at this."), Message("assistant", "I see it."), Message("user", "And now?")]
    kept = engine.generate(follow_up, max_new_tokens=1, min_new_tokens=1)
    dropped = engine.generate(without_image, max_new_tokens=1, min_new_tokens=1)
    assert kept.usage.prompt_tokens > dropped.usage.prompt_tokens + 4


def test_a_stop_string_ends_the_answer_before_it(engine):
    messages = [Message("user", "Count.")]
    full = engine.generate(messages, max_new_tokens=12, min_new_tokens=12).text
    # Greedy decoding is deterministic: stopping at a piece of the known answer is predictable.
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip("\ufffd"), f"unusable stop string from {full!r}"
    stopped = engine.generate(messages, max_new_tokens=12, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stopped.text == full[: full.index(stop)]
    assert stop not in stopped.text


def test_max_new_tokens_ends_with_length(engine):
    result = engine.generate([Message("user", "Go on.")], max_new_tokens=3, min_new_tokens=3)
    assert result.finish_reason == "length" and result.usage.completion_tokens == 3


def test_a_seed_makes_sampling_reproducible(engine):
    messages = [Message("user", "Say something.")]
    runs = [
        engine.generate(messages, max_new_tokens=8, min_new_tokens=8, temperature=1.5, top_p=0.95, seed=seed).text
        for seed in (7, 7, 8)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_usage_reports_latency_figures(engine):
    usage = engine.generate([Message("user", "Hi")], max_new_tokens=4, min_new_tokens=4).usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens == 4 and usage.total_tokens > 4
    assert 0 < usage.time_to_first_token <= usage.latency
    assert usage.tokens_per_second > 0 and usage.queue_seconds >= 0 and usage.batch_size == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.1}, TEMPERATURE_INVALID),
        ({"temperature": 2.5}, TEMPERATURE_INVALID),
        ({"temperature": float("nan")}, TEMPERATURE_INVALID),
        ({"temperature": "hot"}, TEMPERATURE_INVALID),
        ({"top_p": 0}, TOP_P_INVALID),
        ({"top_p": 1.2}, TOP_P_INVALID),
        ({"max_new_tokens": 0}, MAX_NEW_TOKENS_INVALID),
        ({"max_new_tokens": 2.5}, MAX_NEW_TOKENS_INVALID),
        ({"max_new_tokens": True}, MAX_NEW_TOKENS_INVALID),
        ({"max_new_tokens": 100}, MAX_NEW_TOKENS_OVER_CAP.format(value=100, cap=64)),
        ({"stop": [""]}, STOP_INVALID.format(limit=MAX_STOP_STRINGS, length=MAX_STOP_LENGTH)),
        ({"stop": ["a"] * 5}, STOP_INVALID.format(limit=MAX_STOP_STRINGS, length=MAX_STOP_LENGTH)),
        ({"stop": [3]}, STOP_INVALID.format(limit=MAX_STOP_STRINGS, length=MAX_STOP_LENGTH)),
        ({"seed": -1}, SEED_INVALID),
        ({"seed": "1"}, SEED_INVALID),
    ],
)
def test_bad_parameters_are_clear_errors(make_engine, kwargs, message):
    engine = make_engine(max_new_tokens_cap=64)
    with pytest.raises(InvalidRequest) as caught:
        engine.submit([Message("user", "hi")], **kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], MESSAGES_EMPTY),
        ([Message("user", "hi"), Message("assistant", "hello")], MESSAGES_LAST_NOT_USER),
        ([Message("user", "hi"), Message("system", "late"), Message("user", "x")], SYSTEM_NOT_FIRST),
        ([Message("user", "hi", images=("not an image",))], IMAGE_INVALID),
    ],
)
def test_bad_messages_are_clear_errors(engine, messages, message):
    with pytest.raises(InvalidRequest) as caught:
        engine.submit(messages)
    assert str(caught.value) == message


def test_only_users_send_images(engine, red_image):
    with pytest.raises(InvalidRequest) as caught:
        engine.submit([Message("assistant", "x", images=(red_image,)), Message("user", "y")])
    assert str(caught.value) == IMAGE_IN_NON_USER
