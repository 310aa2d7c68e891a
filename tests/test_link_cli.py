"""`cme link` on canonical-person CSV files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fixtures_matching import background_people

from cme_pipeline.cli import main
from cme_pipeline.schemas import LINK_PAIRS

SECRETS = ("Przybylski", "Gethin", "2014-05-20", "CF14 3NX")


def write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    crowd = background_people(300)
    child = {"record_id": "h1", "forename": "Gethin", "middle_names": "", "surname": "Przybylski",
             "dob": "2014-05-20", "sex": "M", "address": "14 Heol y Parc, Cardiff", "postcode": "CF14 3NX"}
    left = pd.concat([pd.DataFrame([child]), crowd], ignore_index=True)
    right = pd.concat([pd.DataFrame([{**child, "record_id": "g1", "forename": "GETHIN"}]),
                       crowd.assign(record_id="R" + crowd["record_id"])], ignore_index=True)
    # the right file lacks a column and has an unparseable date
    right = right.drop(columns=["middle_names"])
    right.loc[5, "dob"] = "31/02/2014"
    return write(tmp_path / "left.csv", left), write(tmp_path / "right.csv", right)


def test_link_writes_pairs(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pairs.csv"
    assert main(["--home", str(tmp_path / "home"), "link", str(files[0]), str(files[1]), "--out", str(out)]) == 0
    pairs = pd.read_csv(out, dtype={"left_id": str, "right_id": str})
    assert tuple(pairs.columns) == LINK_PAIRS
    assert set(pairs["band"]) <= {"match", "possible"}
    assert pairs["probability"].between(0.5, 1).all()
    matches = pairs[pairs["band"] == "match"]
    assert not matches["left_id"].duplicated().any() and not matches["right_id"].duplicated().any()
    assert ((matches["left_id"] == "h1") & (matches["right_id"] == "g1")).sum() == 1
    assert len(matches) >= 295
    captured = capsys.readouterr()
    assert "scoring" in captured.err and "unparseable values treated as missing: 0 left, 1 right" in captured.err
    assert "RIGHT has no middle_names" in captured.err
    for secret in SECRETS:
        assert secret not in captured.out + captured.err


def test_link_thresholds_from_options(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    args = ["--home", str(tmp_path / "home"), "link", str(files[0]), str(files[1]), "--out", str(out)]
    assert main([*args, "--match-threshold", "1.0", "--possible-threshold", "0.99"]) == 0
    assert set(pd.read_csv(out)["band"]) == {"possible"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("forename,surname\nGethin,Przybylski\n", "LEFT file has no record_id column"),
        ("record_id,forename\na,Gethin\na,Przybylski\n", "LEFT file repeats a record_id on row 3"),
        ("record_id,forename\n,Gethin\n", "LEFT file has an empty record_id on row 2"),
        (b"record_id,forename\na,\xff\xfe\n", "LEFT file is not a readable UTF-8 CSV"),
    ],
)
def test_link_bad_input_is_one_line_without_values(
    content: str | bytes, message: str, files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content.encode() if isinstance(content, str) else content)
    code = main(["--home", str(tmp_path / "home"), "link", str(bad), str(files[1]), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Gethin" not in err and "Przybylski" not in err
    assert not (tmp_path / "p.csv").exists()


def test_link_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--home", str(tmp_path), "link", str(tmp_path / "no.csv"), str(tmp_path / "no2.csv"),
                 "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "LEFT file not found" in capsys.readouterr().err


def test_link_explain_prints_the_weights_of_one_pair_without_values(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert main(["--home", home, "link", str(files[0]), str(files[1]), "--explain", "h1", "g1"]) == 0
    out = capsys.readouterr().out
    for comparison in ("prior", "forename", "surname", "dob", "sex", "middle", "location", "total"):
        assert any(line.startswith(comparison) for line in out.splitlines())
    assert "exact" in out and "probability" in out
    assert not any(s.lower() in out.lower() for s in SECRETS)
    # an id not in its file is a one-line error naming the side, never the id
    assert main(["--home", home, "link", str(files[0]), str(files[1]), "--explain", "h1", "nobody"]) != 0
    err = capsys.readouterr().err
    assert "right record not found" in err and "nobody" not in err
    assert main(["--home", home, "link", str(files[0]), str(files[1])]) != 0  # neither --out nor --explain


def test_link_explain_gives_the_probability_the_link_wrote(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--explain justifies the pair the link scored: same profile, same model, same probability."""
    profile = "general"  # cme link's default, whose comparisons differ from the pipeline's
    home, out = str(tmp_path / "home"), tmp_path / "pairs.csv"
    # a pair the profiles compare differently: h2 is h1 with forename and surname swapped
    left = pd.read_csv(files[0], dtype=str, keep_default_na=False)
    h2 = left.iloc[[0]].assign(record_id="h2", forename="Przybylski", surname="Gethin", postcode="", address="")
    write(files[0], pd.concat([left, h2], ignore_index=True))
    assert main(["--home", home, "link", str(files[0]), str(files[1]), "--profile", profile,
                 "--possible-threshold", "0.05", "--out", str(out)]) == 0
    pairs = pd.read_csv(out, dtype={"left_id": str, "right_id": str})
    swapped = pairs[(pairs.left_id == "h2") & (pairs.right_id == "g1")].iloc[0]
    capsys.readouterr()
    assert main(["--home", home, "link", str(files[0]), str(files[1]), "--profile", profile,
                 "--explain", swapped.left_id, swapped.right_id]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("probability "))
    assert float(line.split()[1]) == pytest.approx(float(swapped.probability), abs=1e-6)
