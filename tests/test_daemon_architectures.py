"""The daemon serves StyleGAN3 (T and R) and non-square StyleGAN2 generators like any other:
generate, drag and results in each model's native geometry, over real HTTP."""
from __future__ import annotations

import pytest

from draggan_client.client import DaemonClient
from conftest import make_generator
from draggan_core.formats import native
from test_daemon_support import image_of, running_daemon
from test_stylegan3 import make_sg3


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    models = tmp_path_factory.mktemp("arch-models")
    native.write(make_sg3("t", seed=1), str(models / "sg3t.safetensors"))
    native.write(make_sg3("r", seed=2), str(models / "sg3r.safetensors"))
    native.write(make_generator(seed=3, img_resolution=64, init_res=(4, 2), channel_base=128, channel_max=16),
                 str(models / "human.safetensors"))
    with running_daemon(models) as server:
        yield DaemonClient(server.url, timeout=60)


@pytest.mark.parametrize("model,size", [("sg3t", (32, 32)), ("sg3r", (32, 32)), ("human", (32, 64))])
def test_generate_and_drag_in_native_geometry(client, model, size):
    width, height = size
    made = client.generate(seed=4, model=model)
    listed = {m["name"]: m for m in client.models()}  # a file's size is known once it is loaded
    assert (listed[model]["width"], listed[model]["height"]) == size
    assert image_of(made["image"]).size == size
    handle, target = [width // 2, height // 2], [width // 2 + 3, height // 2 + 4]
    job = client.drag(made["session_id"], handles=[handle], targets=[target], steps=4, preview_every=2)
    final = client.wait(job["job_id"], poll_interval=0.02)
    assert final["state"] == "done", final
    assert final["result"] == {"width": width, "height": height}
    assert image_of(client.result(job["job_id"])).size == size
    assert all(0 <= x <= width - 1 and 0 <= y <= height - 1 for x, y in final["handles"])
