"""The claims report (fer_utils.tools.claims) on hand-made results files and on the committed ones."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from fer_utils import stats
from fer_utils.tools import claims as report


def _row(verdict: str, diff: float = 0.02, half: float = 0.03, n: int = 6, **extra) -> dict:
    v = stats.Verdict("claim " + verdict, "a", "b", 1.0, n, diff, diff - half, diff + half, half, verdict, False)
    return {**v.as_dict(), **extra}


@pytest.fixture()
def results(tmp_path):
    (tmp_path / "02_one.json").write_text(json.dumps({"claims": [
        _row("yes", 0.04, same_with_2_threads=False), _row("opposite", -0.04, same_with_2_threads=True),
        _row("not resolved"), _row("not testable here")]}))
    (tmp_path / "03_two.json").write_text(json.dumps({"claims": [_row("not resolved", 0.0),
                                                                  _row("not resolved", 0.0, half=0.0),
                                                                  _row("yes", 0.01, half=0.0)]}))
    (tmp_path / "04_none.json").write_text(json.dumps({"accuracy": 0.5}))
    return tmp_path


def test_summary_counts_each_notebook_and_the_total(results):
    table = report.summary(report.load_claims(results))
    assert list(table.index) == ["02_one", "03_two", "all"]
    assert table.loc["02_one", ["tested", "not resolved", "decided", "thread-sensitive"]].tolist() == [3, 1, 2, 1]
    assert table.loc["02_one", "budget-limited"] == 3
    assert table.loc["all", "tested"] == 6 and table.loc["all", "share not resolved"] == 0.5
    sd = 0.03 * 6 ** 0.5 / stats.scipy_stats.t.ppf(0.975, 5)
    assert table.loc["02_one", "expected to change"] == round(2 * (1 - stats.power(0.04, sd, 6)), 1) > 0.3
    assert table.loc["03_two", "expected to change"] == 0.0          # every seed repeats the decided difference
    assert list(report.load_claims(results, ["03"])) == ["03_two"]


def test_undecided_plans_seeds_from_the_recorded_interval(results):
    table = report.undecided(report.load_claims(results))
    assert table["notebook"].tolist() == ["02_one", "03_two", "03_two"]
    sd = 0.03 * 6 ** 0.5 / stats.scipy_stats.t.ppf(0.975, 5)
    assert table["sd"].iloc[0] == pytest.approx(sd)
    assert table["seeds for power"].iloc[0] == stats.seeds_for_power(0.02, sd)
    assert pd.isna(table["seeds for power"].iloc[1])          # a zero difference: no n resolves it
    assert table["sd"].iloc[2] == 0 and pd.isna(table["seeds for power"].iloc[2])


def test_main_prints_the_tables_and_names_a_broken_file(results, capsys):
    assert report.main(["--results", str(results), "--undecided"]) == 0
    out = capsys.readouterr().out
    assert "share not resolved" in out and "seeds for power" in out and "> 1000" in out
    (results / "05_bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="05_bad.json"):
        report.load_claims(results)
    assert report.main(["--results", str(results / "nowhere")]) == 1
    (results / "05_bad.json").write_text(json.dumps({"metrics": {"claims": [{"claim": "c", "verdict": "yes"}]}}))
    with pytest.raises(ValueError, match=r"05_bad.json: claims\[0\] lacks n, diff"):
        report.load_claims(results)
    (results / "05_bad.json").write_text(json.dumps({"metrics": {"claims": [_row("yes", 0.1)]}}))
    assert list(report.load_claims(results, ["05"])) == ["05_bad"]   # the runner's {"metrics": ...} form


def test_the_committed_results_have_claims_to_report():
    table = report.summary(report.load_claims())
    assert table.loc["all", "tested"] == table.drop(index="all")["tested"].sum() > 0


def test_plan_sums_the_power_of_every_claim_and_scales_the_run_time(results):
    for name, wall in (("02_one", 120.0), ("03_two", 60.0)):
        data = json.loads((results / f"{name}.json").read_text())
        (results / f"{name}.json").write_text(json.dumps({**data, "time.wall_seconds": wall}))
    table = report.plan(report.load_claims(results), [6, 20], results)
    sd = 0.03 * 6 ** 0.5 / stats.scipy_stats.t.ppf(0.975, 5)
    for seeds in (6, 20):
        miss = 2 * (1 - stats.power(0.04, sd, seeds)) + 1 - stats.power(0.02, sd, seeds)
        assert table.loc[seeds, "expected not resolved"] == round(miss + 2, 1)   # + the two zero differences
        assert table.loc[seeds, "estimated minutes"] == round((120 + 60) * seeds / 6 / 60, 1)
    assert table.loc[20, "expected share"] < table.loc[6, "expected share"] <= 1
    assert table.loc[6, "tested"] == 6
    assert report.main(["--results", str(results), "--plan", "6", "20"]) == 0
