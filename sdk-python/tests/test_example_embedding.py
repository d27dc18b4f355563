"""The real-model example: all-MiniLM-L6-v2 served as a Mehr function on node A and invoked
from node B across the mesh. It needs torch and sentence-transformers, which live in their own
venv (tests/run.sh prepares ~/.cache/mehr/venv-ml and sets MEHR_ML_PYTHON); the rest of the
suite never imports them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ML_PYTHON = os.environ.get("MEHR_ML_PYTHON")

pytestmark = pytest.mark.skipif(
    not ML_PYTHON,
    reason="set MEHR_ML_PYTHON to a Python with examples/requirements-ml.txt and mehr installed "
    "(tests/run.sh prepares ~/.cache/mehr/venv-ml)",
)


def test_embedding_service_serves_on_a_and_embeds_from_b(linked_daemons):
    a, b = linked_daemons
    client = a.client()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEHR_")}
    env.update(MEHR_DATA_DIR=str(a.data_dir), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [ML_PYTHON, str(EXAMPLES / "embedding_service.py"), "--demo", "--caller", str(b.data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout)
    assert report["function"] == "embed-minilm"
    assert report["provider_node_id"] == client.info().node_id
    assert report["local_call"] is False, "B called A's function across the mesh"
    assert report["dimensions"] == 384 and report["device"] == "cpu"
    similarity = report["similarity"]
    for i in range(4):
        assert abs(similarity[i][i] - 1.0) < 1e-3, "vectors are unit length"
    cat, kitten, market, investors = range(4)
    # The model must tell topics apart: paraphrases are closer than unrelated sentences.
    assert similarity[cat][kitten] > 0.5
    assert similarity[cat][kitten] > max(similarity[cat][market], similarity[cat][investors]) + 0.3
    assert similarity[market][investors] > max(similarity[market][cat], similarity[market][kitten]) + 0.3
    # Eight concurrent callers rode in fewer model calls (the function is batched), and each
    # got its own sentence's vector back.
    concurrent = report["concurrent"]
    assert concurrent["calls"] == 8
    assert 1 <= concurrent["model_calls"] < 8
    assert all(s > 0.999 for s in concurrent["similarity_to_alone"]), concurrent
    # Served functions are unregistered once the demo stops.
    assert [f.function_id for f in client.functions()] == []
