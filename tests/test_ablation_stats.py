"""`kdas ablate`'s statistics: paired per-seed differences, t-intervals, the paper's claims."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from kdas.cli.app import main
from kdas.errors import KdasError
from kdas.pipeline.config import PipelineConfig
from kdas.search.ablation import (
    AblationConfig,
    claims,
    paired_difference,
    paired_differences,
    report_ablation,
    run_ablation_report,
    t_quantile,
    verdict,
    write_ablation,
)
from kdas.utils.config import load_typed_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Table values of Student's t, 0.975 quantile (any statistics textbook), by degrees of freedom.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 20: 2.086, 30: 2.042}


def run(mode: str, seed: int, mAP: float, rank1: float, **extra) -> dict:
    fixed = {"rank5": 0.9, "rank10": 0.95, "mAP_se": 0.008, "rank1_se": 0.01, "params_m": 1.0}
    return {
        "mode": mode,
        "seed": seed,
        "mAP": mAP,
        "rank1": rank1,
        **fixed,
        "genotype": "g",
        **extra,
    }


def hand_made_runs() -> list[dict]:
    """Three seeds, differences in points (mAP; rank-1):
    dynamic − constant = +2, +3, +4; +5, +6, +7 (both hold)
    constant − none = −3, −4, −5; −2, −2.5, −3 (both reversed)
    dynamic − none = −1, −1, −1 (no spread: reversed); +3, +3.5, +4 (holds)."""
    none = [(0.53, 0.82), (0.54, 0.825), (0.55, 0.83)]
    constant = [(0.50, 0.80), (0.50, 0.80), (0.50, 0.80)]
    dynamic = [(0.52, 0.85), (0.53, 0.86), (0.54, 0.87)]
    runs = [
        run(mode, seed, m, r)
        for mode, values in (("none", none), ("constant", constant), ("dynamic", dynamic))
        for seed, (m, r) in enumerate(values)
    ]
    random.Random(0).shuffle(runs)  # pairing goes by seed, not by position
    return runs


def undecided_runs() -> list[dict]:
    """As hand_made_runs, but dynamic − constant on rank-1 is −1, +0.5, +2 points."""
    runs = hand_made_runs()
    for r in runs:
        if r["mode"] == "dynamic":
            r["rank1"] = (0.79, 0.805, 0.82)[r["seed"]]
    return runs


def test_t_quantile_matches_the_table():
    for df, value in T_975.items():
        assert t_quantile(df) == pytest.approx(value, abs=5e-4)
    assert t_quantile(1, confidence=0.90) == pytest.approx(6.314, abs=5e-4)
    assert t_quantile(1000) == pytest.approx(1.962, abs=5e-4)  # towards the normal's 1.960
    with pytest.raises(KdasError, match="degree"):
        t_quantile(0)


def test_paired_difference_by_hand():
    runs = hand_made_runs()
    half = 4.302653 * 0.01 / math.sqrt(3)  # t(0.975, 2) · s / √n with s = 1 point
    diff = paired_difference(runs, "dynamic", "constant", "mAP")
    assert diff["seeds"] == [0, 1, 2]
    assert diff["differences"] == pytest.approx([0.02, 0.03, 0.04])
    assert diff["mean"] == pytest.approx(0.03)
    assert diff["std"] == pytest.approx(0.01)
    assert diff["low"] == pytest.approx(0.03 - half, abs=1e-6)
    assert diff["high"] == pytest.approx(0.03 + half, abs=1e-6)
    assert diff["verdict"] == "holds"

    reversed_ = paired_difference(runs, "constant", "none", "mAP")
    assert reversed_["mean"] == pytest.approx(-0.04)
    assert reversed_["high"] == pytest.approx(-0.04 + half, abs=1e-6)
    assert reversed_["verdict"] == "reversed"
    # the same shift on every seed: no spread, the (point) interval lies below 0
    shift = paired_difference(runs, "dynamic", "none", "mAP")
    assert shift["std"] == pytest.approx(0.0, abs=1e-12)
    assert shift["mean"] == pytest.approx(-0.01) and shift["verdict"] == "reversed"

    undecided = paired_difference(undecided_runs(), "dynamic", "constant", "rank1")
    assert undecided["mean"] == pytest.approx(0.005)
    assert undecided["std"] == pytest.approx(0.015)
    wide = 4.302653 * 0.015 / math.sqrt(3)
    assert undecided["low"] == pytest.approx(0.005 - wide, abs=1e-6)
    assert undecided["low"] < 0 < undecided["high"]
    assert undecided["verdict"] == "undecided"


def test_only_seeds_both_modes_ran_are_paired():
    runs = [run("dynamic", 0, 0.6, 0.8), run("dynamic", 1, 0.7, 0.9), run("constant", 1, 0.5, 0.8)]
    one = paired_difference(runs, "dynamic", "constant", "mAP")
    assert one["seeds"] == [1] and one["mean"] == pytest.approx(0.2)
    assert one["low"] is None and one["high"] is None and one["verdict"] == "undecided"
    assert paired_difference(runs, "dynamic", "none", "mAP") is None
    pairs = [(d["first"], d["second"], d["metric"]) for d in paired_differences(runs)]
    assert pairs == [("dynamic", "constant", "mAP"), ("dynamic", "constant", "rank1")]
    claim = claims(paired_differences(runs))[0]
    assert "no interval (one seed)" in claim["sentence"] and "1 paired seed)" in claim["sentence"]


def test_verdict_edges():
    assert verdict(0.001, 0.02) == "holds"
    assert verdict(-0.02, -0.001) == "reversed"
    assert verdict(0.0, 0.02) == "undecided"  # an interval touching 0 contains it
    assert verdict(-0.02, 0.0) == "undecided"
    assert verdict(None, None) == "undecided"


def test_claim_sentences_for_the_three_outcomes():
    decided = claims(paired_differences(hand_made_runs()))
    assert [c["claim"] for c in decided] == [
        "Dynamic temperature beats constant temperature",
        "Distillation (constant T) beats no distillation",
    ]
    holds, reversed_ = decided
    assert holds["verdict"] == "holds"
    assert holds["metrics"] == {"mAP": "holds", "rank1": "holds"}
    assert holds["sentence"] == (
        "Dynamic temperature beats constant temperature: holds — "
        "mAP +3.0 points, 95 % t-interval [+0.5, +5.5] (holds); "
        "rank-1 +6.0 points, 95 % t-interval [+3.5, +8.5] (holds) "
        "(dynamic − constant, 3 paired seeds)."
    )
    assert reversed_["verdict"] == "reversed"
    assert reversed_["sentence"] == (
        "Distillation (constant T) beats no distillation: reversed — "
        "mAP -4.0 points, 95 % t-interval [-6.5, -1.5] (reversed); "
        "rank-1 -2.5 points, 95 % t-interval [-3.7, -1.3] (reversed) "
        "(constant − none, 3 paired seeds)."
    )
    # one metric undecided: the claim is undecided
    undecided = claims(paired_differences(undecided_runs()))[0]
    assert undecided["metrics"] == {"mAP": "holds", "rank1": "undecided"}
    assert undecided["verdict"] == "undecided"
    assert undecided["sentence"] == (
        "Dynamic temperature beats constant temperature: undecided — "
        "mAP +3.0 points, 95 % t-interval [+0.5, +5.5] (holds); "
        "rank-1 +0.5 points, 95 % t-interval [-3.2, +4.2] (undecided) "
        "(dynamic − constant, 3 paired seeds)."
    )


def test_ablation_files_carry_differences_claims_and_noise(tmp_path: Path):
    runs = hand_made_runs()
    runs[0]["mAP_se"] = None  # a run made before metrics carried their noise
    cfg = AblationConfig()
    report = report_ablation(runs, cfg.modes)
    write_ablation(cfg, report, tmp_path)
    text = (tmp_path / "ablation.md").read_text()
    assert "## Paired differences (same seed: same split and initialisation)" in text
    assert "| dynamic − constant | mAP | 3 | +3.0 | [+0.5, +5.5] | holds |" in text
    assert "| constant − none | mAP | 3 | -4.0 | [-6.5, -1.5] | reversed |" in text
    assert "## Claims (paper, Table 1)" in text
    for claim in report.claims:
        assert f"- {claim['sentence']}" in text
    assert text.count("±") >= 15  # the mean ± std table is still there
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert [c["verdict"] for c in saved["claims"]] == ["holds", "reversed"]
    assert len(saved["differences"]) == 6
    assert {"config", "runs", "rows"} <= set(saved)
    header = (tmp_path / "ablation.csv").read_text().splitlines()[0].split(",")
    assert {"mAP_se", "rank1_se"} <= set(header)
    # evaluation noise per mode: only where every run of the mode has it
    noise = {r["mode"]: r["mAP_se_mean"] for r in report.rows}
    missing = runs[0]["mode"]
    assert noise[missing] is None
    assert all(v == pytest.approx(0.008) for m, v in noise.items() if m != missing)
    assert "Evaluation noise of one run" in text and "±0.8 mAP" in text


def fake_finished_run(folder: Path, final: dict) -> None:
    """The files `kdas ablate` reads of a run it finds finished (so nothing is trained)."""
    (folder / "search").mkdir(parents=True)
    (folder / "search" / "genotype.json").write_text("{}")
    (folder / "student").mkdir()
    facts = {"facts": {"parameters": {"total": 1_500_000}}}
    (folder / "student" / "config.json").write_text(json.dumps(facts))
    (folder / "student" / "metrics.json").write_text(json.dumps({"final": final}))


def test_ablate_reads_each_runs_noise_and_prints_the_claims(tmp_path: Path, capsys):
    out = tmp_path / "ablation"
    gaps = {"none": 0.0, "constant": 0.02, "dynamic": 0.05}
    for mode, gap in gaps.items():
        for seed in range(3):
            final = {"mAP": 0.5 + gap + 0.001 * seed * seed, "rank1": 0.8 + gap + 0.002 * seed,
                     "rank5": 0.9, "rank10": 0.95, "mINP": 0.2}  # fmt: skip
            if mode != "none":
                final |= {"mAP_se": 0.007, "rank1_se": 0.011}
            fake_finished_run(out / mode / f"seed{seed}", final)
    report = run_ablation_report(AblationConfig(seeds=3), out)
    by_run = {(r["mode"], r["seed"]): r for r in report.runs}
    assert by_run[("dynamic", 2)]["mAP_se"] == 0.007
    assert by_run[("none", 0)]["mAP_se"] is None and by_run[("none", 0)]["rank1_se"] is None
    assert by_run[("constant", 1)]["params_m"] == pytest.approx(1.5)
    assert [c["verdict"] for c in report.claims] == ["holds", "holds"]

    main(["ablate", "--out", str(out), "--seeds", "3"])
    printed = capsys.readouterr().out
    assert printed.index("| method |") < printed.index("## Claims") < printed.index("-> ")
    for claim in report.claims:
        assert claim["sentence"] in printed


def test_protocol_config_is_a_pipeline_and_an_ablation(tmp_path: Path, capsys):
    path = EXAMPLES / "protocol.toml"
    pipeline = load_typed_config(PipelineConfig, path)
    synth = pipeline.data.synthesize
    assert synth is not None and synth.ids >= 300
    test_ids = synth.ids // 2
    assert test_ids * synth.num_query_cameras >= 1000  # queries: bootstrap se of mAP ≤ 1 point
    assert pipeline.stages == ("data", "teacher")
    assert pipeline.teacher.run.precision == "bf16" == pipeline.student.run.precision

    from kdas.cli.ablate import _base_config
    from kdas.utils.config import from_dict

    base, default_out = _base_config(path)
    cfg = from_dict(AblationConfig, base)
    assert default_out == Path(pipeline.runs_dir) / pipeline.name / "ablation"
    teacher = str(Path(pipeline.runs_dir) / pipeline.name / "teacher")
    for section in (cfg.search, cfg.student):
        assert section.teacher == teacher
        assert section.data.root == pipeline.data.root
        assert section.data.layout == pipeline.data.layout
    assert cfg.seeds == 3 and cfg.modes == ("none", "constant", "dynamic")
    assert cfg.search.run.epochs == pipeline.search.run.epochs
    assert cfg.student.model.C == pipeline.student.model.C

    # an ablation-only config keeps its own format; a typo is still named
    ablation_only, none_out = _base_config(EXAMPLES / "ablation_demo.toml")
    assert none_out is None and ablation_only["seeds"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("seedz = 3\n")
    with pytest.raises(SystemExit):
        main(["ablate", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert "unknown key 'seedz'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ablate", "--seeds", "1"])
    assert "--out is required" in capsys.readouterr().err
