"""Reading labels: the key and struct fields, sample columns read past, every problem with file, line, column."""

from __future__ import annotations

from pathlib import Path

import pytest

from sixtyfour_sync.errors import ConfigError
from sixtyfour_sync.evaluate.labels import key_text, labels_from_rows, read_labels_csv

KINDS = {"email": "str", "employees": "int", "hiring": "bool"}


def test_a_filled_sample_reads_as_labels(tmp_path: Path) -> None:
    path = tmp_path / "sample.csv"
    path.write_text(
        "\ufefflead_id,_sixtyfour_tier,_sixtyfour_band,email_answer,email_confidence,Email,employees\n"
        '1,low,90-100,a@x.io,95,A@x.io,"1,200"\n'
        "2,low,50-69,b@x.io,60,,\n"
        "\n"
        '3,medium,0-49,c@x.io,40,"multi\nline",7\n',
        encoding="utf-8",
    )
    labels = read_labels_csv(path, ["lead_id"], KINDS, sync="leads")
    assert labels.fields == ["email", "employees"]
    assert labels.rows == {
        ("1",): {"email": "A@x.io", "employees": "1,200"},
        ("2",): {"email": None, "employees": None},
        ("3",): {"email": "multi\nline", "employees": "7"},
    }
    assert labels.lines == {("1",): 2, ("2",): 3, ("3",): 5}


def test_every_problem_located(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("lead_id,email,employees,hiring\n1,a@x.io,12,yes\n2,b@x.io,lots,perhaps\n1,c,3,no\n,d,1,no\n3,e\n")
    with pytest.raises(ConfigError) as info:
        read_labels_csv(path, ["lead_id"], KINDS, sync="leads")
    problems = [str(p) for p in info.value.problems]
    assert problems == [
        f"{path}:3: column employees: 'lots' is not a number (field employees is int)",
        f"{path}:3: column hiring: 'perhaps' is not true or false (field hiring is bool)",
        f"{path}:4: column lead_id: key 1 is labelled twice (first on line 2)",
        f"{path}:5: column lead_id: the key is empty",
        f"{path}:6: the row has 2 cells; the header has 4",
    ]


def test_header_problems(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("email,colour,email\nx,y,z\n")
    with pytest.raises(ConfigError) as info:
        read_labels_csv(path, ["org", "lead_id"], KINDS, sync="leads")
    problems = [str(p) for p in info.value.problems]
    assert problems == [
        f"{path}:1: column colour: 'colour' is neither a key column nor a struct field of leads (hint: labels hold "
        "the key (org, lead_id) and struct fields (email, employees, hiring))",
        f"{path}:1: column email: column 'email' appears twice",
        f"{path}:1: column org: the key column 'org' is missing",
        f"{path}:1: column lead_id: the key column 'lead_id' is missing",
    ]
    only_key = tmp_path / "key.csv"
    only_key.write_text("lead_id\n1\n")
    with pytest.raises(ConfigError, match="no struct field of leads to score"):
        read_labels_csv(only_key, ["lead_id"], KINDS, sync="leads")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        read_labels_csv(empty, ["lead_id"], KINDS)
    with pytest.raises(ConfigError, match="cannot read the labels file"):
        read_labels_csv(tmp_path / "nope.csv", ["lead_id"], KINDS)


def test_table_rows_and_key_text() -> None:
    labels = labels_from_rows(
        "crm.labels", ["LEAD_ID", "EMAIL"], [(1, [5, "a@x.io"]), (2, [6.0, None])], ["lead_id"], KINDS, header_line=None
    )
    assert labels.rows == {("5",): {"email": "a@x.io"}, ("6",): {"email": None}}
    assert key_text([5, 6.0, None, " x "]) == ("5", "6", "", "x")
