"""Facts shared by training, export and the torch-free runtime (numpy-free too)."""

from typing import Literal, get_args

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Default Re-ID input (height, width); the paper also uses 384x128.
DEFAULT_INPUT_SIZE: tuple[int, int] = (256, 128)

# The data set layout a root is read in when none is named (kdas.data.layouts.LAYOUTS).
DEFAULT_LAYOUT = "market1501"

# Market-1501 conventions: pid -1 marks junk images, pid 0 distractors.
JUNK_PID = -1
DISTRACTOR_PID = 0

# ONNX: the opset kdas exports by default (every runtime kdas supports reads it), and the range
# the exporters are allowed to target.
ONNX_OPSET = 18
ONNX_OPSET_RANGE: tuple[int, int] = (13, 23)

# The arithmetic a PyTorch model trains or is evaluated in: fp32, or autocast to bf16 (CPU or
# CUDA) or fp16 (CUDA only, with loss scaling).
AutocastPrecision = Literal["fp32", "bf16", "fp16"]
AUTOCAST_PRECISIONS: tuple[str, ...] = get_args(AutocastPrecision)

# The weights of an exported model (ONNX metadata, TensorRT engine): bf16 is not one of them,
# INT8 is (calibrated, QDQ).
ExportPrecision = Literal["fp32", "fp16", "int8"]
EXPORT_PRECISIONS: tuple[str, ...] = get_args(ExportPrecision)
