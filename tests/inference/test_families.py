"""The family matrix: every supported model family run end to end on a tiny random-weight model.

Families: qwen2_vl, qwen2_5_vl, qwen3_vl, glm4v (GLM-4.1V), glm46v (GLM-4.6V), llava and
idefics3, all with transformers' own architecture code, processors and (reduced) chat
templates; and GLM-4V-9B through a tiny stand-in of its own remote code
(tests/support/glm4v9b_standin), loaded with trust_remote_code from a pinned manifest. For each:
make_demo_model builds it (native families); the loader picks the class from the config; fp32,
NF4 and int8 (bitsandbytes on the CPU) load and answer an image chat; the prompt order;
streaming; an image turn over the websocket; an image completion over /v1/chat/completions and
an extraction over the API; the extraction's structured retry loop in the engine; image dtype
safety; and batched greedy answers equal solo ones (fp32: token for token; NF4: identical until
they part, and they may part only where the solo run's best two logits were a near-tie).

The models are built and loaded once per session (each load is shared by every test here).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import inference  # noqa: F401  (sets the offline switches before transformers loads)
from inference.engine.core import Engine
from inference.engine.demo_model import DemoModelSpec
from inference.engine.errors import (
    FAMILY_NOT_VISION,
    FAMILY_UNSUPPORTED,
    MANIFEST_MISMATCH,
    MODEL_IMAGES_OVER_LIMIT,
    REMOTE_CODE_REFUSED,
    SCHEDULING_ONE_AT_A_TIME,
    InvalidRequest,
    ManifestError,
    ModelLoadError,
)
from inference.engine.families import FAMILIES
from inference.engine.handles import Done, Token
from inference.engine.inputs import Message
from inference.engine.loading import load_model, vision_dtype_device
from inference.engine.manifest import manifest_write
from inference.engine.prompting import chatglm_prompt, conversation, model_inputs, place_inputs
from tests.inference.conftest import generate_greedy, run_without_network, steps_before_a_near_tie

STANDIN = "glm4v_9b_standin"
NATIVE = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "glm4v", "glm46v", "llava", "idefics3")
MATRIX = (*NATIVE, STANDIN)
PROCESSOR_CLASS = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "glm4v": "Glm4vProcessor",
    "glm46v": "Glm46VProcessor",
    "llava": "LlavaProcessor",
    "idefics3": "Idefics3Processor",
}
MODEL_TYPE = {**{name: name for name in NATIVE}, STANDIN: "chatglm"}
IMAGE_START = {
    "qwen2_vl": "<|vision_start|>",
    "qwen2_5_vl": "<|vision_start|>",
    "qwen3_vl": "<|vision_start|>",
    "glm4v": "<|begin_of_image|>",
    "glm46v": "<|begin_of_image|>",
    "llava": "<image>",
    "idefics3": "<image>",
    STANDIN: "<|begin_of_image|>",
}


@pytest.fixture(scope="session")
def standin_dir(tmp_path_factory) -> tuple[Path, str]:
    """The GLM-4V-9B stand-in with its manifest; returns (directory, manifest SHA-256 to pin)."""
    from tests.support.glm4v9b_standin import build_glm4v9b_standin

    path = build_glm4v9b_standin(tmp_path_factory.mktemp("families") / "glm-4v-9b-standin")
    return path, manifest_write(path)


@pytest.fixture(scope="session")
def family_dir(demo_model_factory, standin_dir):
    def directory(name: str) -> Path:
        return standin_dir[0] if name == STANDIN else demo_model_factory(DemoModelSpec(family=name))

    return directory


@pytest.fixture(scope="session")
def family_model(family_dir, standin_dir, model_loaded_once):
    """``family_model(name, quantization)``: loaded once per session and shared."""

    def load(name: str, quantization: str = "fp32"):
        if name == STANDIN:
            return model_loaded_once(
                family_dir(name), quantization, trust_remote_code=True, pinned_manifest_sha256=standin_dir[1]
            )
        return model_loaded_once(family_dir(name), quantization)

    return load


@pytest.fixture(params=MATRIX)
def family(request) -> str:
    return request.param


@pytest.fixture
def engine_for(engine_around, family_model):
    """``engine_for(name, quantization="fp32", **limits)``: an engine around that family's model."""

    def make(name: str, quantization: str = "fp32", **limits) -> Engine:
        limits.setdefault("batch_window_seconds", 0.0)
        return engine_around(family_model(name, quantization), **limits)

    return make


@pytest.fixture
def red_image():
    return Image.new("RGB", (96, 64), (200, 30, 30))


@pytest.fixture
def blue_image():
    return Image.new("RGB", (64, 80), (20, 40, 210))


def _image_question(image, text: str = "What colour is this?") -> list[Message]:
    return [Message("system", "Answer briefly."), Message("user", text, images=(image,))]


# --- loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["fp32", "nf4", "int8"])
def test_each_family_loads_by_its_config_and_answers_an_image_chat(
    family, quantization, family_model, engine_for, red_image
):
    import bitsandbytes as bnb
    import transformers

    loaded = family_model(family, quantization)
    profile = FAMILIES[MODEL_TYPE[family]]
    assert loaded.family == MODEL_TYPE[family] and loaded.profile is profile
    model_class = type(loaded.model)
    if profile.remote_code:
        # The model's own class from its own files, as its auto_map names it.
        assert model_class.__name__ == "ChatGLMForConditionalGeneration"
        assert model_class.__module__.startswith("transformers_modules.")
    else:
        assert model_class is getattr(transformers, profile.model_class)
    layer = {"nf4": bnb.nn.Linear4bit, "int8": bnb.nn.Linear8bitLt}.get(quantization)
    if layer is not None:
        quantised = [m for m in loaded.model.modules() if isinstance(m, layer)]
        assert quantised, f"no {quantization} layer in {family}"
        if quantization == "nf4":
            assert quantised[0].weight.quant_state.quant_type == "nf4"
    else:
        assert next(loaded.model.parameters()).dtype == torch.float32
    engine = engine_for(family, quantization)
    result = engine.generate(_image_question(red_image), max_new_tokens=3, min_new_tokens=3)
    assert result.usage.completion_tokens == 3 and result.finish_reason == "length"
    assert engine.info().quantization == quantization and engine.info().family == MODEL_TYPE[family]


def test_an_unsupported_family_is_refused_by_name(family_dir, tmp_path):
    model_copy = tmp_path / "model"
    shutil.copytree(family_dir("qwen2_vl"), model_copy)
    config = json.loads((model_copy / "config.json").read_text())
    config["model_type"] = "smolvlm"  # a real transformers family, not run here (its processor needs num2words)
    (model_copy / "config.json").write_text(json.dumps(config))
    manifest_write(model_copy)
    with pytest.raises(ModelLoadError) as refused:
        load_model(model_copy, quantization="fp32")
    assert str(refused.value) == FAMILY_UNSUPPORTED.format(model_type="smolvlm", supported=", ".join(sorted(FAMILIES)))


def test_a_text_only_chatglm_is_refused(standin_dir, tmp_path):
    model_copy = tmp_path / "glm-4-9b-chat"
    shutil.copytree(standin_dir[0], model_copy)
    config = json.loads((model_copy / "config.json").read_text())
    del config["vision_config"]  # what ChatGLM3 / GLM-4-9B-chat look like: same model_type, no eyes
    (model_copy / "config.json").write_text(json.dumps(config))
    digest = manifest_write(model_copy)
    with pytest.raises(ModelLoadError) as refused:
        load_model(model_copy, quantization="fp32", trust_remote_code=True, pinned_manifest_sha256=digest)
    assert str(refused.value) == FAMILY_NOT_VISION.format(model_type="chatglm")


@pytest.mark.parametrize("name", NATIVE)
def test_make_demo_model_builds_each_family(name, tmp_path, capsys):
    from django.core.management import call_command

    from inference.engine.manifest import manifest_verify

    target = tmp_path / name
    call_command("make_demo_model", "--output", str(target), "--family", name)
    assert f"({name}, tiny)" in capsys.readouterr().out
    assert json.loads((target / "config.json").read_text())["model_type"] == name
    assert json.loads((target / "DEMO_MODEL.json").read_text())["family"] == name
    manifest_verify(target)
    loaded = load_model(target, quantization="fp32")
    assert loaded.family == name and loaded.is_demo
    # The family's own processor class and chat template came with it.
    assert type(loaded.processor).__name__ == PROCESSOR_CLASS[name]
    rendered = loaded.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], add_generation_prompt=True, tokenize=False
    )
    assert rendered.startswith(
        {"glm4v": "[gMASK]<sop>", "glm46v": "[gMASK]<sop>", "llava": "USER: ", "idefics3": "<|im_start|>User:"}.get(
            name, "<|im_start|>user"
        )
    )


# --- GLM-4V-9B: its own code, pinned like any other file -----------------------------------------


def test_the_standin_needs_trust_and_a_pin_and_a_changed_code_file_refuses_the_load(standin_dir, tmp_path):
    path, digest = standin_dir
    with pytest.raises(ModelLoadError) as untrusted:
        load_model(path, quantization="fp32")
    assert str(untrusted.value) == REMOTE_CODE_REFUSED.format(path=path)
    model_copy = tmp_path / "glm-4v-9b"
    shutil.copytree(path, model_copy)
    code = model_copy / "modeling_chatglm.py"
    code.write_text(code.read_text() + "\nimport os  # a change after the review\n")
    with pytest.raises(ManifestError) as changed:
        load_model(model_copy, quantization="fp32", trust_remote_code=True, pinned_manifest_sha256=digest)
    assert str(changed.value) == MANIFEST_MISMATCH.format(name="modeling_chatglm.py")
    # Re-approving the changed files gives a new manifest, which the old pin refuses too.
    new_digest = manifest_write(model_copy)
    assert new_digest != digest
    with pytest.raises(ManifestError):
        load_model(model_copy, quantization="fp32", trust_remote_code=True, pinned_manifest_sha256=digest)


REMOTE_CODE_PROBE = """
from PIL import Image
from inference.engine.core import Engine, EngineLimits
from inference.engine.inputs import Message
from inference.engine.loading import load_model

loaded = load_model(sys.argv[1], quantization="nf4", trust_remote_code=True, pinned_manifest_sha256=sys.argv[2])
engine = Engine(loaded, EngineLimits(batch_window_seconds=0))
image = Image.new("RGB", (64, 64), (0, 120, 255))
handle = engine.submit([Message("user", "hello", images=(image,))], max_new_tokens=3, min_new_tokens=3)
kinds = [event.kind for event in handle.events()]
engine.shutdown()
print(json.dumps({"attempts": attempts, "kinds": kinds, "module": type(loaded.model).__module__}))
"""


def test_the_standins_own_code_loads_and_answers_without_any_network_attempt(standin_dir, tmp_path):
    """A fresh interpreter, an audit hook refusing every connection, an empty HF_HOME: the
    remote-code load (NF4) and a streamed image answer make no network attempt."""
    path, digest = standin_dir
    # transformers copies the model's code under HF_HOME (checked below)
    report = run_without_network(REMOTE_CODE_PROBE, str(path), digest, hf_home=tmp_path / "hf-home")
    assert report["attempts"] == []
    assert report["kinds"][-1] == "done" and report["kinds"].count("done") == 1
    assert report["module"].startswith("transformers_modules.")
    assert list((tmp_path / "hf-home" / "modules").rglob("modeling_chatglm.py"))


def test_the_standin_gets_one_image_as_a_tensor_in_the_vision_towers_dtype(family_model, engine_for, red_image):
    loaded = family_model(STANDIN, "nf4")
    inputs = model_inputs(loaded, [tuple(_image_question(red_image))])
    size = loaded.image_size
    assert inputs["images"].shape == (1, 3, size, size) and inputs["images"].dtype == torch.float32
    seen = {}
    vision = loaded.model.transformer.vision

    def record(module, args):
        seen["dtype"] = args[0].dtype

    hook = vision.register_forward_pre_hook(record)
    try:
        engine_for(STANDIN, "nf4").generate(_image_question(red_image), max_new_tokens=2, min_new_tokens=2)
    finally:
        hook.remove()
    assert seen["dtype"] == vision_dtype_device(loaded.model)[0] == torch.bfloat16
    with pytest.raises(InvalidRequest) as refused:
        engine_for(STANDIN).submit([Message("user", "two?", images=(red_image, red_image))])
    assert str(refused.value) == MODEL_IMAGES_OVER_LIMIT.format(family="GLM-4V-9B", limit=1)


# --- prompting, streaming, extraction --------------------------------------------------------------


def test_prompt_order_is_instruction_then_image_then_text(family, family_model, red_image):
    loaded = family_model(family)
    messages = (Message("system", "INSTRUCTION"), Message("user", "QUESTION", images=(red_image,)))
    if family == STANDIN:
        rendered = chatglm_prompt(messages)
    else:
        rendered = loaded.processor.apply_chat_template(
            conversation(messages), add_generation_prompt=True, tokenize=False
        )
    assert rendered.index("INSTRUCTION") < rendered.index(IMAGE_START[family]) < rendered.index("QUESTION")


def _pieces_as_decoded(tokenizer, ids: list[int]) -> list[str]:
    """What can be sent after each step of an answer of ``ids``: byte-level tokens leave an
    incomplete UTF-8 character (shown as U+FFFD) until its last byte comes; the last step sends all."""
    pieces, sent = [], 0
    for count in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:count], skip_special_tokens=True)
        ready = len(text) if count == len(ids) else len(text.rstrip("\ufffd"))
        if ready > sent:
            pieces.append(text[sent:ready])
            sent = ready
    return pieces


STREAM_QUESTIONS = ("What colour is this?", "Describe the image.", "发票上的金额是多少？", "Read the invoice.")


def test_an_image_chat_streams_each_piece_as_soon_as_it_decodes(family, family_model, engine_for, red_image):
    loaded = family_model(family)
    steps = 16
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    # Random weights often answer with broken UTF-8 only: the first question whose greedy answer
    # (the same computation, token by token) decodes in two or more pieces shows the streaming.
    for question in STREAM_QUESTIONS:
        ids, _ = _greedy(loaded, [_image_question(red_image, question)], steps)
        expected = _pieces_as_decoded(tokenizer, ids[0].tolist())
        if len(expected) >= 2:
            break
    else:
        pytest.fail(f"no question gives a {family} answer in more than one piece")
    engine = engine_for(family)
    handle = engine.submit(_image_question(red_image, question), max_new_tokens=steps, min_new_tokens=steps)
    events = list(handle.events())
    done = events[-1]
    assert isinstance(done, Done) and done.usage.completion_tokens == steps
    assert [event.text for event in events if isinstance(event, Token)] == expected
    text_only = engine.generate([Message("system", "Answer briefly."), Message("user", question)], max_new_tokens=1)
    # The image became vision tokens in the prompt.
    assert done.usage.prompt_tokens >= text_only.usage.prompt_tokens + 3


def test_an_extraction_runs_its_structured_retry_loop(family, engine_for, red_image):
    from inference.engine.structured import instruction_for, structured_generate
    from inference.extraction.services import BUILTIN_TEMPLATES, EXTRACTION_PROMPT

    template = BUILTIN_TEMPLATES["vat-invoice"]
    engine = engine_for(family)
    messages = [
        Message("system", f"{template['instruction']}\n\n{instruction_for(template['json_schema'])}"),
        Message("user", EXTRACTION_PROMPT, images=(red_image,)),
    ]
    outcome = structured_generate(
        messages,
        generate=lambda conversation: engine.generate(conversation, max_new_tokens=6, temperature=0.0),
        schema=template["json_schema"],
        attempts=2,
    )
    assert outcome.attempts == len(outcome.results) >= 1
    if not outcome.valid:  # random weights: expected; the retry carries the image and the problem
        assert outcome.attempts == 2 and outcome.problems
        assert outcome.results[1].usage.prompt_tokens > outcome.results[0].usage.prompt_tokens


# --- dtype safety -----------------------------------------------------------------------------------


def test_image_tensors_follow_the_vision_towers_real_dtype(family, family_model, red_image):
    nf4 = family_model(family, "nf4")
    dtype, device = vision_dtype_device(nf4.model)
    assert dtype == torch.bfloat16  # read from the parameters, not assumed
    assert vision_dtype_device(family_model(family).model)[0] == torch.float32
    inputs = model_inputs(nf4, [tuple(_image_question(red_image))])
    (key,) = [key for key in nf4.profile.image_keys if key in inputs]
    assert inputs[key].dtype == torch.float32  # what the image preparation produces
    placed = place_inputs(
        inputs, input_device=device, vision_dtype=dtype, vision_device=device, image_keys=nf4.profile.image_keys
    )
    assert placed[key].dtype == torch.bfloat16
    for name, value in placed.items():
        if name != key and hasattr(value, "dtype"):
            assert not value.is_floating_point(), f"{name} was cast"  # ids, masks, grids stay integers


# --- batching ---------------------------------------------------------------------------------------


def _batch_messages(red_image, blue_image) -> list[list[Message]]:
    return [
        _image_question(red_image, "short"),
        _image_question(blue_image, "a somewhat longer question about this invoice"),
        [Message("user", "质量报告")],
        _image_question(red_image, "金额是多少？"),
        _image_question(blue_image, "Describe the image."),
        [Message("system", "You read invoices."), Message("user", "What is the total amount?")],
    ]


def test_batched_greedy_answers_equal_solo_answers_in_fp32(family, engine_for, red_image, blue_image):
    requests = _batch_messages(red_image, blue_image)
    solo_engine = engine_for(family, scheduling="per_request")
    solo = [solo_engine.generate(m, max_new_tokens=6, min_new_tokens=6).text for m in requests]
    batch_engine = engine_for(family, batch_window_seconds=0.3, scheduling="per_request")
    handles = [batch_engine.submit(m, max_new_tokens=6, min_new_tokens=6) for m in requests]
    batched = [handle.result() for handle in handles]
    if FAMILIES[MODEL_TYPE[family]].mixed_image_batches:
        expected_sizes = [6] * 6
    else:  # one call for the rows with an image, one for the others
        expected_sizes = [4, 4, 2, 4, 4, 2]
    assert [r.usage.batch_size for r in batched] == expected_sizes
    assert [r.text for r in batched] == solo


def test_the_standin_is_served_one_request_at_a_time_and_says_so(engine_for, red_image):
    # Its own code keeps its own cache and positions: the engine cannot run it one step at a time.
    engine = engine_for(STANDIN)
    info = engine.info()
    assert info.scheduling == "one_at_a_time"
    assert info.scheduling_note == SCHEDULING_ONE_AT_A_TIME.format(family="GLM-4V-9B")
    handles = [engine.submit(_image_question(red_image), max_new_tokens=3, min_new_tokens=3) for _ in range(3)]
    assert [h.result().usage.batch_size for h in handles] == [1, 1, 1]
    native_engine = engine_for("qwen2_vl")
    native = native_engine.info()
    assert native.scheduling == "continuous" and native.scheduling_note == ""
    # /readyz's model line says so for the stand-in, and only for it.
    from inference.runtime import engine_override, model_readiness

    with engine_override(engine):
        ready, detail = model_readiness()
    assert ready and detail.endswith(f"; {info.scheduling_note})")
    with engine_override(native_engine):
        assert "one at a time" not in model_readiness()[1]


def _greedy(loaded, batch: list[list[Message]], steps: int):
    """Greedy ids and raw logits of one generate call, built the way the engine builds it."""
    out, prompt_length = generate_greedy(loaded, batch, max_new_tokens=steps, min_new_tokens=steps, logits=True)
    ids = out.sequences[:, prompt_length:]
    return ids, torch.stack(out.logits, dim=1).float()


def test_batched_greedy_answers_equal_solo_in_nf4_up_to_the_first_near_tie(family, family_model, red_image, blue_image):
    loaded = family_model(family, "nf4")
    requests = _batch_messages(red_image, blue_image)
    if not loaded.profile.mixed_image_batches:
        requests = [m for m in requests if any(message.images for message in m)]
    steps = 12
    batched, _ = _greedy(loaded, requests, steps)
    compared = 0
    for row, messages in enumerate(requests):
        solo, logits = _greedy(loaded, [messages], steps)
        compared += steps_before_a_near_tie(
            solo[0].tolist(), batched[row].tolist(), logits[0], steps, label=f"row {row} "
        )
    assert compared >= steps, f"only {compared} tokens were compared: the comparison proved little"


# --- the web channels: the websocket chat and /v1/chat/completions on each family -----------------


@pytest.fixture
def served_family(family, engine_for, settings, tmp_asset_storage):
    """The family's fp32 model as the process's engine, files stored under tmp_path."""
    from inference.runtime import engine_override

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    engine = engine_for(family, max_new_tokens_cap=64)
    with engine_override(engine):
        yield engine


@pytest.mark.django_db(transaction=True)
async def test_an_image_turn_over_the_websocket(personas, system_context, served_family):
    from asgiref.sync import sync_to_async

    from tests.chat.conftest import frame, open_chat, png_bytes, receive_until
    from tests.support.assets import asset_upload_bytes

    asset = await sync_to_async(asset_upload_bytes)(
        png_bytes(), "photo.png", department=personas.department_a, uploaded_by=personas.member
    )
    chat = await open_chat("bob")
    try:
        params = {"max_new_tokens": 6}
        await chat.send_to(text_data=frame("turn.start", text="What colour?", assets=[str(asset.pk)], params=params))
        frames, done = await receive_until(chat, {"done", "error"})
        assert done["type"] == "done", done
        assert done["usage"]["completion_tokens"] >= 1
        await chat.send_to(text_data=frame("turn.start", text="What colour?", params=params))
        _, text_only = await receive_until(chat, {"done", "error"})
    finally:
        await chat.disconnect()
    # The stored file reached the model as an image (vision tokens in the prompt).
    assert done["usage"]["prompt_tokens"] >= text_only["usage"]["prompt_tokens"] + 3
    tokens = [item["text"] for item in frames if item["type"] == "token"]
    assert all(tokens)


@pytest.mark.django_db
def test_an_image_completion_over_v1_and_an_extraction_over_the_api(
    personas, system_context, served_family, settings, make_key, client_for
):
    import base64
    from datetime import timedelta

    from django.utils import timezone

    from tests.api.conftest import png_bytes

    raw_key, _ = make_key(scopes=["chat", "extract"], expires_at=timezone.now() + timedelta(days=1))
    client = client_for(raw_key)
    image = f"data:image/png;base64,{base64.b64encode(png_bytes()).decode()}"
    body = {
        "model": served_family.info().name,
        "messages": [
            {"role": "system", "content": "You read invoices."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "text", "text": "Total?"},
                ],
            },
        ],
        "max_tokens": 5,
        "temperature": 0,
    }
    response = client.post("/v1/chat/completions", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] >= 1
    # The same answer as the engine gives for the same conversation (greedy).
    expected = served_family.generate(
        [Message("system", "You read invoices."), Message("user", "Total?", images=(_png_image(),))],
        max_new_tokens=5,
    )
    assert answer["choices"][0]["message"]["content"] == expected.text
    assert answer["usage"]["prompt_tokens"] == expected.usage.prompt_tokens

    # A stored invoice image through the extraction API (the platform's own retry loop).
    from compliance.models import AuditEntry
    from tests.support.assets import asset_upload_bytes

    settings.EXTRACTION_MAX_NEW_TOKENS = 8
    settings.STRUCTURED_OUTPUT_ATTEMPTS = 2
    asset = asset_upload_bytes(png_bytes(), "invoice.png", department=personas.department_a, uploaded_by=personas.admin)
    response = client.post("/api/v1/extractions", {"asset": str(asset.pk), "template": "vat-invoice"}, format="json")
    assert response.status_code == 201, response.content
    extraction = response.json()
    # Random weights answer noise: stored as invalid after both attempts, never invented fields.
    assert extraction["status"] == "invalid" and extraction["attempts"] == 2 and extraction["result"] is None
    entry = AuditEntry.objects.filter(event_type="inference.extraction").latest("sequence")
    assert entry.details["status"] == "invalid" and entry.object_id == str(extraction["id"])


def _png_image():
    import io

    from tests.api.conftest import png_bytes

    return Image.open(io.BytesIO(png_bytes())).convert("RGB")
