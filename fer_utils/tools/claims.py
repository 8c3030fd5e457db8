"""What the committed runs decide: every notebook's ``claims`` list in ``results/``, counted and planned.

Each paper notebook records its verdicts (:func:`fer_utils.stats.compare`) in ``results/<notebook>.json``
under ``claims``. This report counts them per notebook::

    tested            verdicts other than "not testable here"
    not resolved      the 95% paired interval contains 0
    decided           "yes" or "opposite"
    thread-sensitive  decided verdicts that the notebook's two-thread rerun did not reproduce
                      (``same_with_2_threads`` False)
    budget-limited    verdicts with an arm that stopped at the epoch cap before its plateau
    expected to change  the sum over decided verdicts of 1 - power (:func:`fer_utils.stats.power` at the
                      verdict's own difference, spread and seeds): how many a rerun of the same design would
                      leave unresolved if the measured differences were the truth (an optimistic count: a
                      decided difference tends to be an overestimate)

and, with ``--undecided``, lists each "not resolved" claim with the paired seeds that would resolve a
difference of the measured size with 80% power (:func:`fer_utils.stats.seeds_for_power`, the measured
difference and spread taken as the truth)::

    python -m fer_utils.tools.claims                      # one row per notebook, and the total
    python -m fer_utils.tools.claims --undecided          # ... and every unresolved claim with its seeds
    python -m fer_utils.tools.claims --notebooks 02 05    # only these notebooks (by number or name)
    python -m fer_utils.tools.claims --plan 10 20 50      # what 10, 20 or 50 paired seeds would buy

``--plan`` asks what more seeds would buy, if every measured difference and spread were the truth: for each
seed count S it gives the expected number of claims left "not resolved" (the sum of 1 - power at
max(S, n) seeds) and the wall time of the notebooks, each notebook's committed ``course`` run scaled by
max(S, n) / n (an estimate that assumes every part of the notebook grows with its seeds).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from fer_utils import stats

ROOT = Path(__file__).resolve().parents[2]
DECIDED = ("yes", "opposite")
UNTESTABLE = "not testable here"
#: the fields every recorded claim carries (those the counts and the seed plans read)
FIELDS = ("claim", "verdict", "n", "diff", "ci_low", "ci_high", "half_width")


def load_claims(results: Path | str = ROOT / "results", notebooks: Sequence[str] = ()) -> dict[str, list[dict]]:
    """notebook -> its recorded ``claims`` (notebooks without a list are left out); ``notebooks``: the names or
    number prefixes to keep (all when empty)."""
    found = {}
    for path in sorted(Path(results).glob("*.json")):
        if notebooks and not any(path.stem == n or path.stem.startswith(f"{n}_") for n in notebooks):
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        claims = data.get("metrics", data).get("claims") if isinstance(data, dict) else None
        for i, row in enumerate(claims or []):
            missing = [k for k in FIELDS if k not in row]
            if missing:
                raise ValueError(f"{path}: claims[{i}] lacks {', '.join(missing)} (a row of stats.Verdict.as_dict)")
        if claims:
            found[path.stem] = claims
    return found


def summary(claims: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per notebook (the counts of the module docstring) and a last row ``all`` with their sums."""
    rows = {}
    for notebook, verdicts in claims.items():
        tested = [c for c in verdicts if c["verdict"] != UNTESTABLE]
        decided = [c for c in tested if c["verdict"] in DECIDED]
        rows[notebook] = {"tested": len(tested), "not resolved": len(tested) - len(decided), "decided": len(decided),
                          "thread-sensitive": sum(c.get("same_with_2_threads") is False for c in decided),
                          "budget-limited": sum(bool(c.get("budget_limited")) for c in tested),
                          "expected to change": sum(1 - _power_at(c, c["n"]) for c in decided)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if len(table):
        table.loc["all"] = table.sum()
        table = table.astype({c: int for c in table.columns if c != "expected to change"})
        table["expected to change"] = table["expected to change"].round(1)
        table["share not resolved"] = (table["not resolved"] / table["tested"]).round(2)
    return table


def undecided(claims: dict[str, list[dict]], power: float = 0.8) -> pd.DataFrame:
    """Every "not resolved" claim: its difference, the per-seed spread s_d read back from its interval, its
    seeds, and the seeds that would resolve a difference of that size with ``power`` (missing: more than 1,000)."""
    rows = []
    for notebook, verdicts in claims.items():
        for row in verdicts:
            if row["verdict"] != "not resolved" or row["n"] < 2:
                continue
            verdict = stats.Verdict.from_dict(row)
            sd, seeds = stats.per_seed_sd(verdict), stats.seeds_to_decide(verdict, power)
            rows.append({"notebook": notebook, "claim": verdict.claim, "dose": verdict.dose, "diff": verdict.diff,
                         "sd": sd, "n": verdict.n, "seeds for power": seeds})
    table = pd.DataFrame(rows, columns=["notebook", "claim", "dose", "diff", "sd", "n", "seeds for power"])
    return table.astype({"seeds for power": "Int64"})


def plan(claims: dict[str, list[dict]], seeds: Sequence[int], results: Path | str = ROOT / "results",
         confidence: float = 0.95) -> pd.DataFrame:
    """For each seed count S, the expected share of tested claims left "not resolved" with S paired seeds per
    claim (never fewer than it had), and the notebooks' estimated wall time::

        E[not resolved](S) = sum over tested claims of 1 - power(d, s_d, max(S, n))
        minutes(S)         = sum over notebooks of wall_seconds * max(S, n) / n / 60

    d and s_d are the claim's measured difference and per-seed spread (:func:`stats.per_seed_sd`); a claim
    without a spread to read (fewer than 2 seeds, d or s_d zero) counts as "not resolved" at every S unless it
    is already decided. n is the notebook's seeds per claim (the most any of its claims used)."""
    rows = []
    for budget in seeds:
        left, minutes = 0.0, 0.0
        for notebook, verdicts in claims.items():
            tested = [c for c in verdicts if c["verdict"] != UNTESTABLE]
            n = max((c["n"] for c in tested), default=0)
            for row in tested:
                left += 1 - _power_at(row, max(budget, row["n"]), confidence)
            wall = _wall_seconds(Path(results) / f"{notebook}.json")
            minutes += wall * max(budget, n) / n / 60 if n and wall else math.nan
        total = sum(len([c for c in v if c["verdict"] != UNTESTABLE]) for v in claims.values())
        rows.append({"seeds": budget, "tested": total, "expected not resolved": round(left, 1),
                     "expected share": round(left / total, 2) if total else math.nan,
                     "estimated minutes": round(minutes, 1)})
    return pd.DataFrame(rows).set_index("seeds")


def _power_at(row: dict, n: int, confidence: float = 0.95) -> float:
    """The chance that ``n`` paired seeds resolve the claim of ``row`` if its measured d and s_d were the truth
    (a decided claim without spread keeps its verdict; an undecided one without spread never resolves)."""
    verdict = stats.Verdict.from_dict(row)
    if verdict.n < 2 or not math.isfinite(verdict.half_width) or verdict.diff == 0:
        return float(verdict.verdict in DECIDED)
    if verdict.half_width == 0:
        return 1.0
    return stats.power(verdict.diff, stats.per_seed_sd(verdict, confidence), n, confidence)


def _wall_seconds(path: Path) -> float | None:
    """The committed run's ``time.wall_seconds`` (None when the file does not record it)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    return data.get("metrics", data).get("time.wall_seconds") if isinstance(data, dict) else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "results"), help="folder of the <notebook>.json files")
    parser.add_argument("--notebooks", nargs="*", default=(), help="names or numbers (02 ...) to keep")
    parser.add_argument("--undecided", action="store_true", help="list the unresolved claims and their seeds")
    parser.add_argument("--power", type=float, default=0.8, help="the power the seeds are planned for")
    parser.add_argument("--plan", nargs="*", type=int, default=(), metavar="S",
                        help="seed counts: expected unresolved claims and notebook minutes at each")
    args = parser.parse_args(argv)
    claims = load_claims(args.results, args.notebooks)
    if not claims:
        print(f"no claims lists in {args.results}")
        return 1
    print(summary(claims).to_string())
    if args.undecided:
        table = undecided(claims, args.power).sort_values("seeds for power", na_position="last")
        table["seeds for power"] = table["seeds for power"].map(lambda n: "> 1000" if pd.isna(n) else f"{int(n)}")
        table["claim"] = table["claim"].str.slice(0, 70)
        table["dose"] = table["dose"].map(str)
        table["diff"], table["sd"] = table["diff"].map("{:+.3f}".format), table["sd"].map("{:.3f}".format)
        print(f"\nnot resolved; 'seeds for power': paired seeds that resolve a difference of the measured size "
              f"with {args.power:.0%} power")
        print(table.to_string(index=False))
    if args.plan:
        print("\nwith S paired seeds per claim, if the measured differences and spreads were the truth")
        print(plan(claims, args.plan, args.results).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
