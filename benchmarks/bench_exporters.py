"""The two torch ONNX exporters side by side on real-size models (what docs/deployment.md cites).

    .venv/bin/python benchmarks/bench_exporters.py     # about 2-4 minutes on the shared CPU

For the ResNet-50 teacher and the two C=64 students of bench_deploy.py (DARTS-V2-like, and with
part-aware ops), at 256x128: export time, node count and op histogram of the raw graph, file
size, and the largest difference from PyTorch (eval forward + L2 norm) on a batch of 2 random
images as run by ONNX Runtime. Writes benchmarks/results/exporters.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_deploy import DARTS_V2, NUM_CLASSES, PART_AWARE  # noqa: E402

from kdas.export.graph import op_counts  # noqa: E402
from kdas.export.onnx_export import EmbeddingGraph, export_graph  # noqa: E402
from kdas.models.spec import StudentArch  # noqa: E402
from kdas.models.student import StudentNetwork  # noqa: E402
from kdas.models.teacher import build_teacher  # noqa: E402
from kdas.runtime.session import create_session  # noqa: E402
from kdas.utils.atomic import atomic_write_json  # noqa: E402

SIZE = (256, 128)


def main() -> None:
    torch.manual_seed(0)
    models = {
        "teacher (ResNet-50)": build_teacher(NUM_CLASSES, "resnet50"),
        "student DARTS-V2 C=64": StudentNetwork(DARTS_V2, NUM_CLASSES, StudentArch(C=64)),
        "student part-aware C=64": StudentNetwork(PART_AWARE, NUM_CLASSES, StudentArch(C=64)),
    }
    x = np.random.default_rng(0).standard_normal((2, 3, *SIZE), dtype=np.float32)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in models.items():
            net.eval()
            with torch.no_grad():
                ref = EmbeddingGraph(net)(torch.from_numpy(x)).numpy()
            for exporter in ("legacy", "dynamo"):
                path = Path(tmp) / f"{exporter}.onnx"
                t0 = time.perf_counter()
                model, used = export_graph(net, SIZE, path, exporter)
                seconds = time.perf_counter() - t0
                out = create_session(path, providers="cpu").run(None, {"images": x})[0]
                row = {
                    "model": name,
                    "exporter": used,
                    "export_s": seconds,
                    "nodes": len(model.graph.node),
                    "ops": op_counts(model),
                    "file_mb": path.stat().st_size / 2**20,
                    "max_abs_diff_vs_torch": float(np.abs(out - ref).max()),
                }
                results.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "ops"}), flush=True)
    atomic_write_json(ROOT / "benchmarks" / "results" / "exporters.json", results)


if __name__ == "__main__":
    main()
