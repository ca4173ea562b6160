"""Facts shared by training, export and the torch-free runtime (numpy-free too)."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Default Re-ID input (height, width); the paper also uses 384x128.
DEFAULT_INPUT_SIZE: tuple[int, int] = (256, 128)

# Market-1501 conventions: pid -1 marks junk images, pid 0 distractors.
JUNK_PID = -1
DISTRACTOR_PID = 0
