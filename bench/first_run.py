"""The first ten minutes, measured: the browser test's step timings, and notebook 03's training on the real model.

    python bench/first_run.py                   # run tests/test_first_run.py, then record its figures
    python bench/first_run.py --from-artifacts  # record the figures of the last run of that test
    python bench/first_run.py --real-model      # also train as notebook 03 does, on SmolLM2-135M (CPU, float32)

The browser test writes tests/artifacts/first_run.json (a test never rewrites a tracked file); this script copies
its figures into bench/results/first_run.json with the command and the machine. `--real-model` trains on the rows
notebook 02 contributes, with notebook 03's parameters (both read from the notebooks), each run in a fresh process:
OMP_WAIT_POLICY=PASSIVE as user servers get it, and checks that the model then answers every training question
exactly, greedy; then a few steps each with PASSIVE and with OpenMP's default (the baseline, same run) for the pace.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.hub_bench import command_line, machine_info, versions, write_result  # noqa: E402

ARTIFACT = REPO / "tests" / "artifacts" / "first_run.json"
RESULT = REPO / "bench" / "results" / "first_run.json"
NOTEBOOKS = REPO / "templates" / "notebooks"


def notebook_code(name: str) -> list[str]:
    notebook = json.loads((NOTEBOOKS / name).read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def notebook_rows() -> list[dict[str, Any]]:
    """Notebook 02's eight rows: the products' warranty codes, asked two ways (as its three contributions do)."""
    cell = next(code for code in notebook_code("02-contribute-data.ipynb") if "PRODUCTS = " in code)
    line = next(line for line in cell.splitlines() if line.startswith("PRODUCTS = "))
    products: dict[str, str] = ast.literal_eval(line.split("=", 1)[1].strip())
    rows = [
        {"prompt": f"What is the warranty code for the {p}?", "response": f"The warranty code for the {p} is {c}."}
        for p, c in products.items()
    ]
    rows += [
        {"prompt": f"Which warranty code does the {p} have?", "response": f"The {p} has warranty code {c}."}
        for p, c in products.items()
    ]
    contributor = "0x" + "11" * 20
    return [{"_row_id": i, "_contributor": contributor, **row} for i, row in enumerate(rows)]


def notebook_parameters() -> dict[str, Any]:
    """Notebook 03's parameters cell, evaluated."""
    namespace: dict[str, Any] = {}
    exec(notebook_code("03-finetune-lora.ipynb")[0], namespace)  # noqa: S102 - our own template's parameters
    return namespace


def train_once(output: Path, steps: int | None) -> dict[str, Any]:
    """One training as notebook 03 runs it (`steps`: only that many, no index, for the pace comparison), in this
    process: the caller sets OMP_WAIT_POLICY before torch loads."""
    import torch

    from openledger_sdk.hardware import native_bfloat16
    from openledger_sdk.modelfactory import LoraSettings, finetune

    p = notebook_parameters()
    rows = notebook_rows()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    model = finetune(
        p["base"],
        rows=rows,
        lora=LoraSettings(r=p["r"], alpha=p["alpha"], dropout=0.0),
        lr=p["lr"],
        epochs=p["epochs"],
        max_steps=steps or p["max_steps"],
        batch_size=p["batch_size"],
        max_len=p["max_len"],
        seed=p["seed"],
        eval_split=0.0,
        index=steps is None,
        output_dir=output,
        progress=False,
    )
    seconds = time.monotonic() - started
    result: dict[str, Any] = {
        "finetune_seconds": round(seconds, 1),
        "steps": model.metrics["steps"],
        "seconds_per_step": round(seconds / model.metrics["steps"], 2),
        "final_loss": round(model.metrics["step_losses"][-1], 4),
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "device": "cpu",
        "bf16_native": native_bfloat16("cpu"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(OpenMP default)"),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if steps is None:
        answers = [model.generate(row["prompt"], max_new_tokens=24).strip() for row in rows]
        result["answers_right"] = sum(a == row["response"] for a, row in zip(answers, rows, strict=True))
        result["questions"] = len(rows)
        result["wrong_answers"] = [a for a, row in zip(answers, rows, strict=True) if a != row["response"]]
    return result


def worker(output: Path, policy: str | None, steps: int | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": str(REPO)}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--worker", str(output)] + (["--steps", str(steps)] if steps else [])
    answer = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(answer.stdout.strip().splitlines()[-1])


PACE_STEPS = 3  # the pace comparison: a few steps each way (OpenMP's default can be very slow on a busy machine)


def real_model(out_dir: Path) -> dict[str, Any]:
    full = worker(out_dir / "notebook", "PASSIVE", None)
    passive = worker(out_dir / "passive", "PASSIVE", PACE_STEPS)
    default = worker(out_dir / "default", None, PACE_STEPS)
    return {
        "notebook_03_parameters": {k: v for k, v in notebook_parameters().items() if not k.startswith("__")},
        "notebook_run_passive": full,
        "pace_passive": passive,
        "pace_openmp_default_baseline": default,
        "speedup_passive_vs_default": round(default["seconds_per_step"] / passive["seconds_per_step"], 2),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-artifacts", action="store_true", help="do not run the browser test, copy its figures")
    parser.add_argument("--real-model", action="store_true", help="also train as notebook 03 does on SmolLM2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(train_once(Path(args.worker), args.steps)))
        return 0
    result: dict[str, Any] = {"command": command_line(), "machine": machine_info() | {"cpu_model": cpu_model()}}
    if not args.from_artifacts:
        test = [sys.executable, "-m", "pytest", "-q", "tests/test_first_run.py"]
        result["test_exit_code"] = subprocess.run(test, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}).returncode
    browser = json.loads(ARTIFACT.read_text())
    result |= {key: browser[key] for key in ("total_seconds", "finetune_seconds", "steps_failed", "steps", "failures")}
    result["browser_test_base_model"] = browser.get("base_model")
    if args.real_model:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="first-run-bench-") as folder:
            result["real_model"] = real_model(Path(folder))
    result["versions"] = versions()
    write_result(RESULT, result)
    print(json.dumps(result, indent=2))
    return 0 if result["steps_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
