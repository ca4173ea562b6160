"""The one exception type a user sees as a single line, never as a traceback."""

from __future__ import annotations


class KdasError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do.

    The CLI prints `error: <message>` and exits with `exit_code`; library callers catch it like
    any exception. Code 2 is reserved for "this capability is absent on this machine".
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BackendUnavailable(KdasError):
    """An optional backend (CUDA, TensorRT, faiss-gpu, onnxruntime) is missing or unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)
