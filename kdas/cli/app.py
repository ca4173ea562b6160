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
    from kdas.cli import pipeline as pipeline_cli
    from kdas.cli import search as search_cli
    from kdas.cli import serve as serve_cli
    from kdas.cli import student as student_cli
    from kdas.cli import teacher as teacher_cli

    train, deploy, whole = "Train and search", "Deploy", "End to end"
    app.add_typer(
        data_cli.app, name="data", help="Synthesise and inspect Re-ID data sets.",
        rich_help_panel=train,
    )  # fmt: skip
    app.add_typer(
        teacher_cli.app, name="teacher", help="Train the ResNet Re-ID teacher.",
        rich_help_panel=train,
    )  # fmt: skip
    app.command("search", rich_help_panel=train)(search_cli.search_command)
    app.command("train", rich_help_panel=train)(student_cli.train_command)
    app.command("eval", rich_help_panel=train)(evaluate_cli.eval_command)
    app.command("info", rich_help_panel=train)(evaluate_cli.info_command)
    app.command("ablate", rich_help_panel=train)(ablate_cli.ablate_command)
    app.command("export", rich_help_panel=deploy)(export_cli.export_command)
    app.command("parity", rich_help_panel=deploy)(export_cli.parity_command)
    app.command("bench", rich_help_panel=deploy)(export_cli.bench_command)
    app.add_typer(
        index_cli.app, name="index", help="Build, update, query and evaluate a gallery index.",
        rich_help_panel=deploy,
    )  # fmt: skip
    app.command("serve", rich_help_panel=deploy)(serve_cli.serve_command)
    app.command("pipeline", rich_help_panel=whole)(pipeline_cli.pipeline_command)


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
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
