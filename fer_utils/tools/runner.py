"""The driver behind ``make run`` and ``make regen``: execute the notebooks with papermill, one line per
cell, collect what each records (maintainers' machinery; a notebook itself imports :mod:`fer_utils.course`).

From the shell (what the Makefile calls)::

    python -m fer_utils.tools.runner run   --profile course --out outputs
    python -m fer_utils.tools.runner regen              # maintainers: outputs in place
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from fer_utils.profiles import PROFILES
from fer_utils.tools.timings import measured
from fer_utils.utils import record

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


# --- the driver behind `make run` and `make regen` -----------------------------------------

def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _first_line(source: str, width: int = 48) -> str:
    """The first line of a cell that is neither blank nor a comment, shortened to ``width``."""
    lines = [l.strip() for l in source.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    text = lines[0] if lines else ""
    return text if len(text) <= width else text[: width - 3] + "..."


def _report_cells(nb_man, stream=None) -> None:
    """Make papermill's execution manager print one line per code cell: its number, its first line
    when it starts, its wall time when it ends (``    cell 7/31  fit(model, ...)  42.1 s``)."""
    stream = stream or sys.stdout
    code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
    number = {index: k + 1 for k, index in enumerate(code)}
    start, complete, began = nb_man.cell_start, nb_man.cell_complete, {}

    def cell_start(cell, cell_index=None, **kw):
        if cell_index in number:
            began[cell_index] = time.time()
            stream.write(f"    cell {number[cell_index]:>2}/{len(code)}  {_first_line(cell.source):<48} ")
            stream.flush()
        return start(cell, cell_index, **kw)

    def cell_complete(cell, cell_index=None, **kw):
        if cell_index in began:
            failed = cell.metadata.get("papermill", {}).get("exception")
            stream.write(f"{time.time() - began.pop(cell_index):6.1f} s{'  FAILED' if failed else ''}\n")
            stream.flush()
        return complete(cell, cell_index, **kw)

    nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete


def _engine_and_kernel_manager() -> tuple[str, type]:
    """Register papermill's nbclient engine with per-cell lines (:func:`_report_cells`), and a kernel
    manager that talks to the kernel over local Unix sockets (ZMQ ``ipc``) on POSIX systems: local
    only, and the kernel then prints no "running over TCP without encryption" warning."""
    from jupyter_client.manager import KernelManager
    from papermill.engines import NBClientEngine, papermill_engines
    from traitlets import default

    class CellLinesEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            _report_cells(nb_man)
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    class LocalKernelManager(KernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

    papermill_engines.register("fer-cell-lines", CellLinesEngine)
    return "fer-cell-lines", LocalKernelManager


def _execute(src: Path, dst: Path, parameters: dict, env: dict[str, str], kernel_name: str = "python3") -> float:
    """Execute one notebook with papermill; turn papermill's long errors into one clear line."""
    import papermill as pm
    from jupyter_client.kernelspec import NoSuchKernel

    engine, kernel_manager = _engine_and_kernel_manager()
    old = dict(os.environ)
    os.environ.update(env)
    start_time = time.time()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=kernel_name,
                            progress_bar=False, cwd=str(src.parent), engine_name=engine,
                            kernel_manager_class=kernel_manager)
    except NoSuchKernel as err:
        raise SystemExit(f"{src.name}: Jupyter kernel not found ({err}). Run through `make run`, which "
                         "uses the python3 kernel of the project's .venv.") from None
    except pm.PapermillExecutionError as err:
        raise SystemExit(f"{src.name}: cell {err.exec_count} failed: {err.ename}: {err.evalue}\n"
                         f"(the executed notebook with the full traceback is {dst})") from None
    finally:
        os.environ.clear()
        os.environ.update(old)
    return time.time() - start_time


def _results_table(results: dict[str, dict], seconds: dict[str, float]) -> str:
    lines = ["# Recorded metrics", "", "| notebook | profile | seconds | metrics |", "|---|---|---|---|"]
    for name, data in results.items():
        metrics = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"
        )
        lines.append(f"| {name} | {data.get('profile', '?')} | {seconds.get(name, 0):.0f} | {metrics} |")
    return "\n".join(lines) + "\n"


def run_course(profile: str, out: Path, only: list[str] | None = None) -> Path:
    """Execute every notebook into ``out/`` and write ``out/results.md``."""
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; valid profiles are {', '.join(PROFILES)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(exist_ok=True)
    results, seconds = {}, {}
    for src in notebook_paths():
        if only and not any(src.stem.startswith(o) for o in only):
            continue
        res = out / "results" / f"{src.stem}.json"
        print(f"[{time.strftime('%H:%M:%S')}] running {src.name} ({profile}) ...", flush=True)
        seconds[src.stem] = _execute(src, out / src.name, {"profile": profile},
                                     {"FER_PROFILE": profile, "FER_RESULTS_DIR": str((out / "results").resolve()),
                                      "FER_FIGURES_DIR": str((out / "figures").resolve())})
        _clean_notebook(out / src.name, for_commit=False)
        results[src.stem] = json.loads(res.read_text())
        print(f"    done in {seconds[src.stem]:.0f} s", flush=True)
    table = out / "results.md"
    table.write_text(_results_table(results, seconds))
    print(f"wrote {table.relative_to(ROOT) if table.is_relative_to(ROOT) else table}")
    return table


def regenerate(only: list[str] | None = None) -> None:
    """Maintainers: execute each notebook in place with the ``course`` profile, metrics to ``results/``."""
    results_dir = ROOT / "results"
    results_dir.mkdir(exist_ok=True)
    for src in notebook_paths():
        if only and not any(src.stem.startswith(o) for o in only):
            continue
        print(f"[{time.strftime('%H:%M:%S')}] regenerating {src.name} ...", flush=True)
        env = {"FER_PROFILE": "course", "FER_RESULTS_DIR": str(results_dir)}
        times = measured(lambda: _execute(src, src, {}, env))
        _clean_notebook(src)
        for name, value in times.items():  # the README's timing table is generated from these
            record(name, value, results_dir / f"{src.stem}.json")
        print(f"    done in {times['time.wall_seconds']:.0f} s", flush=True)


def _final_text(text: str) -> str:
    """What a terminal shows: for each line, only what follows its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _coalesce_streams(outputs: list) -> list:
    """Merge consecutive stdout/stderr outputs into one and keep only the final state of
    progress bars (each tqdm refresh is stored as its own output otherwise)."""
    merged: list = []
    for out in outputs:
        if out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" \
                and merged[-1].get("name") == out.get("name"):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = _final_text(out["text"])
    return [out for out in merged if out.get("output_type") != "stream" or out["text"].strip()]


def _clean_notebook(path: Path, for_commit: bool = True) -> None:
    """Coalesce progress-bar outputs; for committed notebooks also drop papermill's run
    metadata (timestamps, absolute paths)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = _coalesce_streams(cell.outputs)
    if not for_commit:
        nbformat.write(nb, path)
        return
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fer_utils.tools.runner", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute every notebook into an output folder")
    run_p.add_argument("--profile", default=os.environ.get("FER_PROFILE", "course"))
    run_p.add_argument("--out", default=str(ROOT / "outputs"))
    run_p.add_argument("notebooks", nargs="*", help="prefixes such as 00 01 (default: all)")
    regen_p = sub.add_parser("regen", help="maintainers: regenerate committed outputs and results/")
    regen_p.add_argument("notebooks", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_course(args.profile, Path(args.out), args.notebooks)
    else:
        regenerate(args.notebooks)


if __name__ == "__main__":
    main(sys.argv[1:])
