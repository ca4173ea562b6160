"""The names of the files kdas writes into run, artifact and index folders: one home, so a
reader (the pipeline, the report, the runtime) never spells a name the writer spelled otherwise.

Torch-free and numpy-free, like `kdas.constants`: the runtime imports it too.
"""

# Any model artifact folder (teacher, student): kdas.models.artifacts
CONFIG_FILE = "config.json"  # the typed config that made it, the model spec, its facts
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"

# Long jobs (training, search): kdas.engine.runner
TRAIN_LOG = "log.jsonl"  # one line per epoch of training
SEARCH_LOG = "alphas.jsonl"  # one line per epoch of the search, with α
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/last.pt"
BEST_WEIGHTS = f"{CHECKPOINT_DIR}/best.safetensors"

# The search and the student: the derived cell
GENOTYPE_FILE = "genotype.json"
# The search folder's pictures: kdas.search.plots
ALPHAS_PLOT = "alphas.png"  # α of every edge over the epochs
SCHEDULE_PLOT = "schedule.png"  # the distillation temperature T and weight w per epoch
CELL_PLOTS = {"normal": "cell_normal.png", "reduce": "cell_reduce.png"}  # the derived cells
LATENCY_PLOT = "latency.png"  # E[lat] under α and the derived genotype's predicted latency
STABILITY_PLOT = "stability.png"  # α entropy and the α-argmax skip/pool counts per epoch

# An evaluation folder (`kdas eval`: MODEL_DIR/eval; the pipeline: runs/NAME/eval/<role>),
# which also holds METRICS_FILE
EVAL_DIR = "eval"
RANK_LIST_PLOT = "rank_list.png"
CMC_PLOT = "cmc.png"

# The synthetic data set's own description, at its root
SYNTH_CONFIG_FILE = "synth_config.json"

# Export folder: a run's EXPORT_DIR, beside its model folders (runs/NAME/export)
EXPORT_DIR = "export"
# <kind><suffix>: teacher.onnx, student.int8.onnx... (TensorRT: <kind>[.fp16|.int8].engine)
ONNX_SUFFIXES = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".int8.onnx"}
# OpenVINO IR: <kind><suffix> with its weights beside it (student.int8.xml + student.int8.bin)
IR_SUFFIXES = {"fp32": ".xml", "bf16": ".bf16.xml", "int8": ".int8.xml"}
PARITY_FILE = "parity.json"
BENCH_FILE = "bench.json"
BENCH_TABLE = "bench.md"  # the bench result as a Markdown table
BENCH_PLOT = "bench.png"

# A gallery index folder: kdas.runtime.index_persistence
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"  # the FAISS index, vectors keyed by 64-bit gallery ids
GALLERY_FILE = "gallery.sqlite"  # id, path, pid, camid, added
INDEX_MODEL_STEM = "model"  # the embedding model, so the folder is all a service needs


def index_model_name(model_path: object) -> str:
    """`model.onnx`, `model.xml` (+ `model.bin`) or `model.engine`: the model's own suffix."""
    suffix = str(model_path).rsplit(".", 1)[-1].lower() if "." in str(model_path) else "onnx"
    return f"{INDEX_MODEL_STEM}.{suffix}"


# The pipeline's run folder
REPORT_FILE = "report.html"
PIPELINE_STATE_FILE = "pipeline.json"  # each stage's status, config hash and summary

# An ablation folder (`kdas ablate`): kdas.search.ablation
ABLATION_FILE = "ablation.json"  # config, every run, the table rows
ABLATION_TABLE = "ablation.md"
ABLATION_CSV = "ablation.csv"  # one row per run
ABLATION_PLOT = "ablation.png"

# Hardware-aware search: a run's latency table (runs/NAME/latency/), and the accuracy against
# latency picture of several runs (`kdas pareto`, the pipeline report)
LATENCY_DIR = "latency"
LATENCY_TABLE_FILE = "table.json"
PARETO_PLOT = "pareto.png"
PARETO_FILE = "pareto.json"
