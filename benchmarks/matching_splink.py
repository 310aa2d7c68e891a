"""Benchmark: our matcher and Splink 5 side by side, in one run, on the same files.

Both link the simulated health extract against the school census (the register that holds 98%
of the matches) from the same two CSV files in canonical person columns, and both are scored
against the same ground truth: precision, recall and F1 of the match band (probability >= 0.95)
after one-to-one assignment, and wall time from the files to the pairs.

Splink is configured as its documentation recommends for person data (the DuckDB backend; the
``ForenameSurnameComparison``, ``DateOfBirthComparison`` and ``PostcodeComparison`` presets; term
frequencies on names; several blocking rules; no sex comparison, because Splink's EM drives its
"different" level's m below the 1e-300 it accepts and stops with an error; the prior from deterministic rules, u from random
sampling, m by EM blocked on names and on dob), then ``cluster_using_single_best_links`` with
both datasets duplicate-free, which is Splink's one-to-one linking. Its inputs get the
standardisation its docs ask for (lower case, diacritics folded, empty strings as NULL).

    .venv/bin/python benchmarks/matching_splink.py [--scale cardiff|wales] [--noise 1.0]

Needs the optional ``bench`` dependency group (``.venv/bin/uv sync --all-groups``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matching import machine  # noqa: E402
from matching_data import cardiff, pair_metrics, wales  # noqa: E402

from cme_pipeline.matching import link  # noqa: E402
from cme_pipeline.matching.normalise import clean_text, map_unique, postcode_parts  # noqa: E402

REGISTER = "school_census"


def splink_frame(path: Path) -> pd.DataFrame:
    """Standardise a canonical-person CSV the way Splink's docs ask (it does no cleaning)."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = pd.DataFrame({"unique_id": raw["record_id"]})
    for column, source in (("first_name", "forename"), ("middle_name", "middle_names"), ("surname", "surname"),
                           ("address", "address")):
        out[column] = map_unique(raw[source].to_numpy(dtype=object), clean_text)
    out["middle_name"] = [v.split(" ")[0] for v in out["middle_name"]]
    # The first address line: the health extract appends town and LA name, the registers only
    # the town, so whole lines would never agree exactly.
    out["address"] = map_unique(raw["address"].str.split(",").str[0].to_numpy(dtype=object), clean_text)
    out["dob"] = pd.to_datetime(raw["dob"], format="%Y-%m-%d", errors="coerce").dt.strftime("%Y-%m-%d")
    out["sex"] = raw["sex"].where(raw["sex"].isin(["M", "F"]), "")
    out["postcode"] = [p[0] for p in map_unique(raw["postcode"].to_numpy(dtype=object), postcode_parts)]
    out["first_name_surname_concat"] = (out["first_name"] + " " + out["surname"]).str.strip()
    return out.replace("", None)


def run_splink(left_csv: Path, right_csv: Path) -> tuple[pd.DataFrame, float]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    start = time.perf_counter()
    left, right = splink_frame(left_csv), splink_frame(right_csv)
    db_api = DuckDBAPI()
    df_left = db_api.register(left, dataset_display_name="health")
    df_right = db_api.register(right, dataset_display_name="register")
    settings = SettingsCreator(
        link_type="link_only",
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "surname"),
            block_on("surname", "dob"),
            block_on("first_name", "dob"),
            block_on("postcode", "dob"),
            block_on("postcode", "first_name"),
        ],
        comparisons=[
            cl.ForenameSurnameComparison(
                "first_name", "surname", forename_surname_concat_col_name="first_name_surname_concat"
            ),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.PostcodeComparison("postcode"),
            cl.NameComparison("middle_name"),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.8]),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker([df_left, df_right], settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob"), block_on("dob", "postcode")], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_using_single_best_links(
        predictions, duplicate_free_datasets=["health", "register"], threshold_match_probability=0.95
    ).as_pandas_dataframe()
    wall = time.perf_counter() - start
    ids = clusters.groupby("cluster_id")
    pairs = []
    for _, group in ids:
        if len(group) == 2 and set(group["source_dataset"]) == {"health", "register"}:
            h = group.loc[group["source_dataset"] == "health", "unique_id"].iloc[0]
            r = group.loc[group["source_dataset"] == "register", "unique_id"].iloc[0]
            pairs.append((h, r))
    return pd.DataFrame(pairs, columns=["left_id", "right_id"]), wall


def run_ours(left_csv: Path, right_csv: Path) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    left = pd.read_csv(left_csv, dtype=str, keep_default_na=False)
    right = pd.read_csv(right_csv, dtype=str, keep_default_na=False)
    pairs = link(left, right)
    wall = time.perf_counter() - start
    return pairs[pairs["band"] == "match"], wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", choices=("cardiff", "wales"), default="cardiff")
    parser.add_argument("--noise", type=float, default=1.0)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    data = cardiff(args.noise) if args.scale == "cardiff" else wales(args.noise)
    with tempfile.TemporaryDirectory() as tmp:
        left_csv, right_csv = Path(tmp) / "health.csv", Path(tmp) / "register.csv"
        data.health.to_csv(left_csv, index=False)
        data.registers[REGISTER].to_csv(right_csv, index=False)
        print(f"{data.name}, noise x{args.noise}: {len(data.health)} health vs {len(data.registers[REGISTER])} "
              f"{REGISTER} records")
        for name, runner in (("ours", run_ours), ("splink", run_splink)):
            pairs, wall = runner(left_csv, right_csv)
            m = pair_metrics(data, REGISTER, pairs)
            print(f"  {name:7s} precision {m['precision']:.5f} recall {m['recall']:.5f} F1 {m['f1']:.5f} "
                  f"(tp {m['tp']}, fp {m['fp']}, fn {m['fn']}); wall {wall:.1f} s")


if __name__ == "__main__":
    main()
