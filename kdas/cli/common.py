"""What the command groups share: option parsing (sizes, lists, data set options) and the option
groups that several commands take (`TrainOptions`, `DataSetOptions`).

Options the user leaves out stay None and are not passed on, so the library's dataclass or
function holds the one default (`given`, `TrainOptions.overrides`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from kdas.constants import AUTOCAST_PRECISIONS
from kdas.errors import KdasError

DATA_HELP = "Data set root folder."
LAYOUT_HELP = "On-disk layout: market1501, dukemtmc, cuhk03, msmt17 or folder."
PRECISION_HELP = f"{', '.join(AUTOCAST_PRECISIONS)} (fp16: CUDA only)."

F = TypeVar("F", bound=Callable[..., Any])


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'256x128' -> (256, 128): height x width, as Re-ID papers write it."""
    if text is None:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise KdasError(f"size {text!r} is not HEIGHTxWIDTH (e.g. 256x128)") from None
    if height < 4 or width < 4:
        raise KdasError(f"size {text!r} is too small (at least 4x4)")
    return height, width


def parse_int_list(text: str | None) -> tuple[int, ...] | None:
    """'1,8,32' -> (1, 8, 32); None stays None."""
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise KdasError(f"{text!r} is not a comma-separated list of integers") from None


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """'a, b,c' -> ('a', 'b', 'c'); None stays None."""
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def op_set(text: str | None) -> str | tuple[str, ...] | None:
    """--ops: a named primitive set ('auto-reid+dense') or a comma-separated list of ops."""
    if text is None or "," not in text:
        return text
    return parse_names(text)


def given(**options: Any) -> dict[str, Any]:
    """The options the user set; the library fills in its defaults for the others."""
    return {name: value for name, value in options.items() if value is not None}


def layout_options(
    variant: str | None = None,
    merge_val: bool | None = None,
    include_distractors: bool | None = None,
) -> dict[str, Any] | None:
    """Only the options the user gave, so each layout sees just what it understands."""
    options = given(variant=variant, merge_val=merge_val, include_distractors=include_distractors)
    return options or None


VariantOption = typer.Option(None, "--variant", help="CUHK03-NP: labeled or detected.")
MergeValOption = typer.Option(
    None, "--merge-val/--no-merge-val", help="MSMT17: merge the val list into train."
)
DistractorsOption = typer.Option(
    None,
    "--include-distractors/--no-distractors",
    help="Market-1501: add the 500k images/ to the gallery.",
)


def is_main_process() -> bool:
    """Under torchrun every rank runs the command; only rank 0 should print results."""
    import os

    return os.environ.get("RANK", "0") == "0"


# Option groups: a frozen dataclass whose fields carry their typer.Option. `with_options(Group)`
# adds the fields to a command's options; the command receives them as one `Group` instance.


def _option(*flags: str, help: str | None = None, default: Any = None) -> Any:
    option = typer.Option(default, *flags, help=help)
    return dataclasses.field(default=default, metadata={"option": option})


def _shared(option: Any) -> Any:
    """A field for an option that commands outside a group use as well (VariantOption...)."""
    return dataclasses.field(default=option.default, metadata={"option": option})


@dataclasses.dataclass(frozen=True)
class DataSetOptions:
    """The data set of `kdas eval` and `kdas parity`: where it is and how it is laid out."""

    data: str = _option("--data", help=DATA_HELP, default=...)
    layout: str | None = _option("--layout", help=LAYOUT_HELP)
    variant: str | None = _shared(VariantOption)
    merge_val: bool | None = _shared(MergeValOption)
    distractors: bool | None = _shared(DistractorsOption)

    def layout_options(self) -> dict[str, Any] | None:
        return layout_options(self.variant, self.merge_val, self.distractors)


@dataclasses.dataclass(frozen=True)
class TrainOptions(DataSetOptions):
    """What `kdas teacher train`, `kdas search` and `kdas train` share: a config file that the
    options override, the data set and its batches, and the run (epochs, precision, resume)."""

    data: str | None = _option("--data", help=DATA_HELP)  # the config file may name it
    config: Path | None = _option(  # noqa: RUF009 (_option makes a dataclasses.field)
        "--config", help="TOML/YAML config; options override it."
    )
    epochs: int | None = _option("--epochs")
    size: str | None = _option("--size", help="Input HEIGHTxWIDTH, e.g. 256x128.")
    p: int | None = _option("--p", help="Identities per batch.")
    k: int | None = _option("--k", help="Images per identity.")
    precision: str | None = _option("--precision", help=PRECISION_HELP)
    device: str | None = _option("--device", help="auto, cpu, cuda, cuda:N.")
    workers: int | None = _option("--workers", help="Data loader workers.")
    seed: int | None = _option("--seed")
    val_fraction: float | None = _option(
        "--val-fraction",
        help="Training identities held out for validation (default 0.1; 0: none).",
    )
    resume: bool = _option("--resume", help="Continue from the last checkpoint.", default=False)
    force: bool = _option(
        "--force", help="Discard an earlier run in the output folder.", default=False
    )

    def overrides(self, **sections: Any) -> dict[str, Any]:
        """The config overrides of these options (None: keep the config's value) and of the
        command's own `sections`; a section these options also fill ("data", "run") is merged."""
        merged: dict[str, Any] = {
            "data": {
                "root": self.data,
                "layout": self.layout,
                "size": parse_size(self.size),
                "p": self.p,
                "k": self.k,
                "num_workers": self.workers,
                "val_fraction": self.val_fraction,
                "options": self.layout_options(),
            },
            "run": {
                "epochs": self.epochs,
                "precision": self.precision,
                "device": self.device,
                "seed": self.seed,
            },
        }
        for key, value in sections.items():
            merged[key] = {**merged[key], **value} if key in merged else value
        return merged


G = TypeVar("G")


def with_options(group: type[G], name: str = "shared") -> Callable[[F], F]:
    """Give a command the options of the dataclass `group` after its own; it receives them as
    one `group` instance in its keyword-only parameter `name`."""
    hints = typing.get_type_hints(group)
    extra = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.metadata["option"],
            annotation=hints[field.name],
        )
        for field in dataclasses.fields(group)
    ]

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != name]

        @functools.wraps(command)
        def run(**options: Any) -> Any:
            values = {p.name: options.pop(p.name) for p in extra}
            return command(**options, **{name: group(**values)})

        run.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        run.__annotations__ = {
            **{k: v for k, v in command.__annotations__.items() if k != name},
            **{p.name: p.annotation for p in extra},
        }
        return run  # type: ignore[return-value]

    return decorate


BackendOption = typer.Option(
    None, "--backend", help="auto (by file type), onnxruntime, openvino (.xml) or tensorrt."
)
OvDeviceOption = typer.Option(
    None, "--ov-device", help="OpenVINO device: CPU (default), GPU, NPU or AUTO."
)


def embedder_choice(backend: str | None, ov_device: str | None) -> Any:
    """The runtime's `EmbedderChoice` from the options the user gave (None: its defaults)."""
    if backend is None and ov_device is None:
        return None
    from kdas.runtime.embedder import EmbedderChoice

    return EmbedderChoice(**given(backend=backend, device=ov_device))
