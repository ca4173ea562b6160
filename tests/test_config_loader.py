"""Typed config loading: partial tables keep their field's defaults; bad values fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdas.engine.config import StudentTrainConfig
from kdas.errors import KdasError
from kdas.search.config import SearchConfig
from kdas.utils.config import load_typed_config


def test_partial_tables_keep_the_stage_defaults(tmp_path: Path) -> None:
    path = tmp_path / "search.toml"
    path.write_text("[loss.kd]\nt0 = 4.0\n[data]\nroot = 'x'\n[run]\nepochs = 3\n")
    cfg = load_typed_config(SearchConfig, path)
    assert cfg.loss.kd.t0 == 4.0
    assert cfg.loss.kd.mode == "dynamic"  # the search's default, not KDSchedule's bare "none"
    assert (cfg.data.root, cfg.data.p, cfg.data.k) == ("x", 8, 2)
    assert cfg.data.random_erasing == 0.0  # paper 4.2: flip + crop only
    assert (cfg.run.epochs, cfg.run.eval_every) == (3, 0)


def test_cli_overrides_land_on_stage_defaults() -> None:
    cfg = load_typed_config(StudentTrainConfig, None, {"data": {"root": "d"}, "run": {"seed": 2}})
    assert cfg.run.epochs == 200 and cfg.run.seed == 2
    assert cfg.loss.kd.mode == "dynamic" and cfg.data.random_erasing == 0.0


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[loss.kd]\nmode = 'strong'\n")
    with pytest.raises(KdasError, match=r"loss\.kd\.mode: 'strong' is not one of"):
        load_typed_config(SearchConfig, path)
    path.write_text("[data]\nsize = [1, 2, 3]\n")
    with pytest.raises(KdasError, match=r"data\.size: expected 2 values"):
        load_typed_config(SearchConfig, path)
    path.write_text("[model]\nwidth = 3\n")
    with pytest.raises(KdasError, match="unknown key 'width'"):
        load_typed_config(SearchConfig, path)
