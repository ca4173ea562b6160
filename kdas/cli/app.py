"""The `kdas` command: groups are registered here, errors become one line and an exit code."""

from __future__ import annotations

import sys

import typer

from kdas import __version__
from kdas.errors import KdasError

app = typer.Typer(
    name="kdas",
    help="KDAS-ReID: teacher, KD-guided architecture search, student, export, retrieval runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kdas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """KDAS-ReID for person re-identification, from data to a deployed retrieval service."""


def _register() -> None:
    # Imported here so each group module stays a plain list of commands.
    from kdas.cli import ablate as ablate_cli
    from kdas.cli import data as data_cli
    from kdas.cli import evaluate as evaluate_cli
    from kdas.cli import export as export_cli
    from kdas.cli import index as index_cli
    from kdas.cli import latency as latency_cli
    from kdas.cli import pipeline as pipeline_cli
    from kdas.cli import pretrain as pretrain_cli
    from kdas.cli import search as search_cli
    from kdas.cli import serve as serve_cli
    from kdas.cli import student as student_cli
    from kdas.cli import teacher as teacher_cli

    train, deploy, whole = "Train and search", "Deploy", "End to end"
    groups = (  # (name, Typer app, help, help panel)
        ("data", data_cli.app, "Synthesise and inspect Re-ID data sets.", train),
        ("teacher", teacher_cli.app, "Train the ResNet Re-ID teacher.", train),
        ("index", index_cli.app, "Build, update, query and evaluate a gallery index.", deploy),
        ("latency", latency_cli.app, "Profile and check the latency table of a backend.", deploy),
    )
    commands = (  # (name, function, help panel), in the order `kdas --help` lists them
        ("search", search_cli.search_command, train),
        ("pretrain", pretrain_cli.pretrain_command, train),
        ("train", student_cli.train_command, train),
        ("eval", evaluate_cli.eval_command, train),
        ("info", evaluate_cli.info_command, train),
        ("ablate", ablate_cli.ablate_command, train),
        ("export", export_cli.export_command, deploy),
        ("parity", export_cli.parity_command, deploy),
        ("bench", export_cli.bench_command, deploy),
        ("serve", serve_cli.serve_command, deploy),
        ("pipeline", pipeline_cli.pipeline_command, whole),
        ("pareto", pipeline_cli.pareto_command, whole),
    )
    for name, group, text, panel in groups:
        app.add_typer(group, name=name, help=text, rich_help_panel=panel)
    for name, function, panel in commands:
        app.command(name, rich_help_panel=panel)(function)


_register()


def one_line(message: str) -> str:
    """A KdasError raised in a DataLoader worker comes back wrapped in torch's multi-line
    "Caught ... in DataLoader worker" report; the user needs only its last line."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if len(lines) > 1 and "Original Traceback" in message:
        return lines[-1].split("KdasError: ", 1)[-1]
    return message.strip()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a KdasError prints `error: ...` on one line and exits with its code."""
    try:
        app(args=argv, standalone_mode=False)
    except KdasError as exc:
        typer.secho(f"error: {one_line(str(exc))}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit codes
        if isinstance(exc, _click_exceptions()):
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "kdas"
            message = one_line(exc.format_message())
            typer.secho(f"error: {message} (see `{command} --help`)", fg="red", err=True)
            sys.exit(exc.exit_code)
        raise


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Typer >= 0.25 ships its own copy of click (typer._click); older ones use click itself."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
