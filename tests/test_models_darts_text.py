"""DARTS' `Genotype(...)` text: every form load_genotype reads, and code that is never run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from genotypes import DARTS_V2_TEXT

from kdas.errors import KdasError
from kdas.models.darts_text import parse_darts_genotype
from kdas.models.genotype import load_genotype


def test_darts_tuple_form(tmp_path: Path) -> None:
    g = load_genotype(DARTS_V2_TEXT)
    assert g.normal[5] == ("skip_connect", 0) and g.reduce_concat == (2, 3, 4, 5)
    assert g.steps == 4
    text_file = tmp_path / "darts.txt"
    text_file.write_text("DARTS_V2 = " + DARTS_V2_TEXT + "\n")
    assert load_genotype(text_file) == g
    json_string = tmp_path / "darts.json"
    json_string.write_text(json.dumps(DARTS_V2_TEXT))
    assert load_genotype(json_string) == g
    positional = DARTS_V2_TEXT.replace("normal=", "").replace("normal_concat=", "")
    positional = positional.replace("reduce=", "").replace("reduce_concat=", "")
    assert load_genotype(positional) == g
    assert load_genotype("DARTS_V2 = " + DARTS_V2_TEXT) == g


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Genotype(normal=__import__('os').system('echo pwned'), normal_concat=[2], "
            "reduce=[], reduce_concat=[2])",
            "normal is not a literal",
        ),
        ("Genotype(normal=[], normal_concat=range(2, 6), reduce=[])", "missing 'reduce_concat'"),
        (
            "Genotype(normal=[], normal_concat=range(2, 6), reduce=[], reduce_concat=[2], x=1)",
            "unknown Genotype field 'x'",
        ),
        ("Genotype(normal=[('sep_conv_3x3', 0)", "not a Genotype"),
        (
            "Genotype(normal=[('sep_conv_3x3', 0), ('bad_op', 1)], normal_concat=range(2, 3), "
            "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])",
            r"normal\[1\]: 'bad_op' is not a known op",
        ),
    ],
)
def test_darts_tuple_form_errors(text: str, message: str) -> None:
    with pytest.raises(KdasError, match=message):
        load_genotype(text)


def test_parse_gives_the_four_fields_as_plain_lists() -> None:
    fields = parse_darts_genotype("DARTS_V2 = " + DARTS_V2_TEXT)
    assert list(fields) == ["normal", "normal_concat", "reduce", "reduce_concat"]
    assert fields["normal"][0] == ["sep_conv_3x3", 0] and fields["reduce_concat"] == [2, 3, 4, 5]
