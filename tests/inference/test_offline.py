"""Hub access is impossible by construction: no socket is opened while loading and generating.

The proof runs in a fresh interpreter so that nothing imported earlier in the test session
(or cached by transformers) can hide a network call: an audit hook there records every
``socket.connect`` / ``socket.getaddrinfo`` (and refuses it) from before transformers is
imported until after a streamed generation with an image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.inference.conftest import run_without_network

PROBE = textwrap.dedent(
    """
    from PIL import Image
    from inference.engine.core import Engine, EngineLimits
    from inference.engine.loading import load_model
    from inference.engine.inputs import Message

    loaded = load_model(sys.argv[1], quantization="fp32")
    engine = Engine(loaded, EngineLimits(batch_window_seconds=0))
    image = Image.new("RGB", (64, 64), (0, 120, 255))
    handle = engine.submit([Message("user", "hello", images=(image,))], max_new_tokens=3, min_new_tokens=3)
    kinds = [event.kind for event in handle.events()]
    engine.shutdown()
    flags = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    print(json.dumps({"attempts": attempts, "kinds": kinds, "flags": flags}))
    """
)


def test_no_socket_is_opened_during_load_and_generation(demo_model_dir, tmp_path):
    report = run_without_network(PROBE, str(demo_model_dir), hf_home=tmp_path / "hf-home")
    assert report["attempts"] == []
    assert report["kinds"][-1] == "done" and report["kinds"].count("token") >= 1
    assert report["flags"] == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_the_audit_hook_would_catch_a_connection(tmp_path):
    """The probe's hook is real: a plain connection attempt is recorded and refused."""
    probe = textwrap.dedent(
        """
        import json, socket, sys
        attempts = []
        def hook(event, args):
            if event in ("socket.connect", "socket.getaddrinfo"):
                attempts.append(event)
                raise OSError("forbidden")
        sys.addaudithook(hook)
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        except OSError:
            pass
        print(json.dumps(attempts))
        """
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(completed.stdout) != []
