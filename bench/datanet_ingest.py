"""Datanet ingest throughput: 100k short prompt/response rows through the full contribution path, against a plain
pandas → Parquet write of the same rows (the baseline).

    .venv/bin/python bench/datanet_ingest.py --rows 100000 --runs 3

"ingest" is `DatanetService.contribute_rows` on a fresh SQLite datanet: schema validation, canonical JSON +
keccak256 per row, the in-upload and database exact-duplicate checks, MinHash signatures + LSH near-duplicate
checks, and the SQL insert of rows and signatures in one transaction. "ingest_file" is the same from a JSONL file
(parsing included). "publish" freezes the rows into the Parquet snapshot and builds both Merkle trees. Runs are
interleaved (baseline, ingest, file) so machine noise hits each alike; the medians are reported. Peak memory comes
from a separate tracemalloc pass (tracing slows Python down, so it is not timed) and from ru_maxrss.
Writes bench/results/datanet_ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
from eth_hash.auto import keccak  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402

from hub.blobs import BlobStore  # noqa: E402
from hub.datanets import config  # noqa: E402
from hub.datanets.service import DatanetService  # noqa: E402
from hub.datanets.spec import DatanetSpec  # noqa: E402
from hub.db import make_engine, migrate  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "datanet_ingest.json"
SYLLABLES = ["da", "ta", "net", "lo", "ra", "led", "ger", "mer", "kle", "at", "tri", "bu", "tion", "jup", "y", "ter"]


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False


def make_rows(count: int, seed: int = 7) -> list[dict[str, str]]:
    """Short, distinct rows (about 70 characters): random made-up words, so no two are near duplicates."""
    rng = random.Random(seed)
    vocabulary = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(20_000)})
    rows = []
    for i in range(count):
        words = rng.choices(vocabulary, k=8)
        rows.append({"prompt": f"What is {' '.join(words[:3])}?", "response": f"{' '.join(words[3:])} ({i})."})
    return rows


def address(name: str) -> str:
    return to_checksum_address(keccak(name.encode())[-20:])


class Bench:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.blobs = BlobStore(directory / "blobs")
        self.runs = 0

    def service(self) -> DatanetService:
        self.runs += 1
        engine = make_engine(f"sqlite:///{self.directory / f'ingest-{self.runs}.sqlite'}")
        migrate(engine)
        service = DatanetService(engine, self.blobs, address)
        service.create(User("owner"), DatanetSpec(name="bench-rows", schema={"prompt": "str", "response": "str"}))
        return service

    def baseline(self, rows: list[dict[str, str]]) -> None:
        pd.DataFrame(rows).to_parquet(self.directory / f"baseline-{self.runs}.parquet", index=False)
        self.runs += 1

    def ingest(self, rows: list[dict[str, str]]) -> DatanetService:
        service = self.service()
        submission = service.contribute_rows(User("contributor"), "bench-rows", rows)
        assert submission["rows"] == len(rows), submission
        return service

    def ingest_file(self, path: Path, rows: int) -> None:
        service = self.service()
        submission = service.contribute_file(User("contributor"), "bench-rows", path, path.name)
        assert submission["rows"] == rows, submission

    @staticmethod
    def publish(service: DatanetService) -> dict[str, Any]:
        submission = service.submissions(User("owner"), "bench-rows")[0]
        service.review(User("owner"), "bench-rows", submission["id"], True, "")
        return service.publish(User("owner"), "bench-rows")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def traced_peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config.configure(max_rows_per_upload=max(args.rows, config.settings.max_rows_per_upload))
    rows = make_rows(args.rows)
    samples: dict[str, list[float]] = {"baseline_s": [], "ingest_s": [], "ingest_file_s": [], "publish_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        jsonl = Path(tmp) / "rows.jsonl"
        jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
        for _ in range(args.runs):
            samples["baseline_s"].append(timed(lambda: bench.baseline(rows))[0])
            seconds, service = timed(lambda: bench.ingest(rows))
            samples["ingest_s"].append(seconds)
            samples["ingest_file_s"].append(timed(lambda: bench.ingest_file(jsonl, len(rows)))[0])
            seconds, version = timed(lambda service=service: bench.publish(service))
            samples["publish_s"].append(seconds)
            service.engine.dispose()
        peak_baseline = traced_peak(lambda: bench.baseline(rows))
        peak_ingest = traced_peak(lambda: bench.ingest(rows).engine.dispose())
    median = {name: statistics.median(values) for name, values in samples.items()}
    result = {
        "command": f"python bench/datanet_ingest.py --rows {args.rows} --runs {args.runs}",
        "rows": args.rows,
        "runs": args.runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "near_dup": {
            "num_perm": config.settings.near_dup_num_perm,
            "shingle": config.settings.near_dup_shingle,
            "threshold": config.settings.near_dup_threshold,
        },
        "samples": samples,
        "median": median,
        "rows_per_s": {
            "baseline_pandas_parquet": args.rows / median["baseline_s"],
            "ingest_rows": args.rows / median["ingest_s"],
            "ingest_jsonl_file": args.rows / median["ingest_file_s"],
            "publish_snapshot_and_merkle": args.rows / median["publish_s"],
        },
        "ingest_vs_baseline_time_ratio": median["ingest_s"] / median["baseline_s"],
        "ingest_file_vs_baseline_time_ratio": median["ingest_file_s"] / median["baseline_s"],
        "peak_memory_mb": {
            "baseline_tracemalloc": peak_baseline / 2**20,
            "ingest_tracemalloc": peak_ingest / 2**20,
            "process_max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        "last_version_root": version["merkle_root"],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("median", "rows_per_s", "ingest_vs_baseline_time_ratio", "peak_memory_mb")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
