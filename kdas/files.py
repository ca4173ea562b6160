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

# The synthetic data set's own description, at its root
SYNTH_CONFIG_FILE = "synth_config.json"

# Export folder
PARITY_FILE = "parity.json"
BENCH_FILE = "bench.json"

# A gallery index folder: kdas.runtime.index_persistence
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"  # the FAISS index, vectors keyed by 64-bit gallery ids
GALLERY_FILE = "gallery.sqlite"  # id, path, pid, camid, added
INDEX_MODEL_FILE = "model.onnx"  # the embedding model, so the folder is all a service needs

# The pipeline's run folder
REPORT_FILE = "report.html"
