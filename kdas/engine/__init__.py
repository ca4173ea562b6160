"""The training loop shared by teacher and student: checkpoints, DDP, logging, evaluation."""
