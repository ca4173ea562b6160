"""HTTP service under a bounded concurrent load on loopback: requests/s, p50/p99, errors.

    .venv/bin/python benchmarks/bench_service.py                      # 4 clients, 2,000 requests
    .venv/bin/python benchmarks/bench_service.py --model runs/x/export/student.onnx

The service (`kdas serve`) runs in its own process on 127.0.0.1 with a free port; the clients
are threads in this process, each posting one 256x128 JPEG to /v1/search (k=10) in a loop
until the request budget is spent; then the server is stopped. Without --model, a small
stand-in CNN (256x128 in, 512-d out) is exported so the numbers show the service's own cost
(upload, decode, preprocess, search, JSON) plus a light model; the gallery holds `--gallery`
clustered 512-d embeddings so that search has realistic work too.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def export_stand_in(path: Path, seed: int = 0) -> Path:
    """A small strided CNN with kdas metadata (the shape of a real export, far cheaper)."""
    import hashlib
    import warnings

    import onnx
    import torch
    from torch import nn

    from kdas.constants import IMAGENET_MEAN, IMAGENET_STD, ONNX_OPSET
    from kdas.runtime.model_meta import EmbeddingModelInfo

    class StandIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [3, 32, 64, 128, 256, 512]
            layers: list[nn.Module] = []
            for cin, cout in itertools.pairwise(chans):
                layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout),
                           nn.ReLU()]  # fmt: skip
            self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.body(x), dim=1)

    torch.manual_seed(seed)
    net = StandIn().eval()
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode() + tensor.numpy().tobytes())
    info = EmbeddingModelInfo(
        model_kind="student", input_name="images", output_name="embeddings", input_height=256,
        input_width=128, mean=IMAGENET_MEAN, std=IMAGENET_STD, embedding_dim=512,
        weights_sha256=digest.hexdigest(), kdas_version="bench",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net, (torch.zeros(1, 3, 256, 128),), str(path), input_names=["images"],
            output_names=["embeddings"], opset_version=ONNX_OPSET, dynamo=False,
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
        )  # fmt: skip
    model = onnx.load(str(path))
    for key, value in info.to_metadata_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def build_gallery_index(model: Path, out: Path, size: int, seed: int = 0) -> None:
    """Clustered unit embeddings (identities x 20 views) under the model's identity."""
    from kdas.runtime.index import GalleryIndex
    from kdas.runtime.session import read_model_info

    info = read_model_info(model)
    rng = np.random.default_rng(seed)
    ids = max(1, size // 20)
    centers = rng.standard_normal((ids, info.embedding_dim), dtype=np.float32)
    x = np.repeat(centers, 20, axis=0)[:size]
    x += rng.standard_normal(x.shape, dtype=np.float32) * 0.7
    records = [(f"/gallery/{i // 20:06d}_{i}.jpg", i // 20, i % 6) for i in range(size)]
    GalleryIndex.build(x, records, info, "flat", model_path=model).save(out)


def query_images(n: int, seed: int = 0) -> list[bytes]:
    """Person-sized JPEGs (256x128) with some structure, so decoding costs what it should."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((128, 256), Image.Resampling.BILINEAR)
        noise = rng.integers(-12, 12, (256, 128, 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(index: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("KDAS_API_TOKEN", None)  # read-only: the benchmark only searches
    cmd = [sys.executable, "-m", "kdas", "serve", str(index), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def wait_ready(client, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="an exported kdas ONNX model")
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/service.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kdas-bench-service-") as tmp:
        work = Path(tmp)
        model = args.model or export_stand_in(work / "stand_in.onnx")
        t0 = time.perf_counter()
        build_gallery_index(model, work / "index", args.gallery)
        print(f"index of {args.gallery} embeddings built in {time.perf_counter() - t0:.1f} s")
        payloads = query_images(32)
        port = free_port()
        proc = start_server(work / "index", port)
        latencies: list[float] = []
        statuses: list[int] = []
        lock = threading.Lock()
        budget = iter(range(args.requests))
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as probe:
                wait_ready(probe, proc)
                for payload in payloads[:4]:  # warm-up, not counted
                    probe.post("/v1/search", files={"images": ("q.jpg", payload)})

            def client(worker: int) -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                    while True:
                        with lock:
                            i = next(budget, None)
                        if i is None:
                            return
                        files = {"images": ("q.jpg", payloads[i % len(payloads)], "image/jpeg")}
                        start = time.perf_counter()
                        try:
                            status = http.post(
                                "/v1/search", files=files, data={"k": str(args.k)}
                            ).status_code
                        except httpx.HTTPError:
                            status = -1
                        elapsed = time.perf_counter() - start
                        with lock:
                            latencies.append(elapsed)
                            statuses.append(status)

            start = time.perf_counter()
            workers = [threading.Thread(target=client, args=(w,)) for w in range(args.clients)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall = time.perf_counter() - start
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as probe:
                stats = probe.get("/v1/stats").json()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    lat_ms = np.array(latencies) * 1e3
    errors = sum(1 for s in statuses if s != 200)
    result = {
        "benchmark": "bench_service",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": str(args.model) if args.model else "stand-in CNN 256x128 -> 512-d",
        "gallery": args.gallery,
        "clients": args.clients,
        "requests": len(statuses),
        "errors": errors,
        "requests_per_s": len(statuses) / wall,
        "latency_ms": {
            "p50": float(np.percentile(lat_ms, 50)),
            "p90": float(np.percentile(lat_ms, 90)),
            "p99": float(np.percentile(lat_ms, 99)),
            "max": float(lat_ms.max()),
        },
        "server_request_counts": stats["requests"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("requests", "errors", "requests_per_s", "latency_ms")},
                     indent=2))  # fmt: skip
    print(f"results -> {args.out}")
    if errors:
        raise SystemExit(f"{errors} requests failed")


if __name__ == "__main__":
    main()
