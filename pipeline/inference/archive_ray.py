"""Archive scoring on Ray Data (`ser predict --output-dir ... --engine ray`): the files as a
dataset, `map_batches` over a pool of actors that each hold the model (`FileScorer`: one CPU each,
or one GPU each on cuda), the answers streamed back to the driver, which writes the same shards as
a local job. On a cluster every node reads the files at the same paths (shared storage) and has
this package installed; the driver connects to `--ray-address` (or RAY_ADDRESS, as under
`ray job submit`), else starts a local instance with one CPU per worker."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from .archive_workers import FileScorer, Scoring

BLOCKS_PER_WORKER = 16  # the files are cut into this many blocks per actor: a slow one holds up little


class RayScorer:
    """A Ray Data actor: the model, loaded once; a batch of paths in, their answers (JSON) out."""

    def __init__(self, scoring: Scoring, device: str):
        self.score = FileScorer(scoring, device, threads=1)

    def __call__(self, batch: dict) -> dict:
        return {"index": batch["index"], "answer": [json.dumps(self.score(p)) for p in batch["path"]]}


def ray_answers(
    scoring: Scoring, paths: list[str], workers: int, device: str, address: str | None
) -> Iterator[tuple[int, dict]]:
    """(index, answer) of each of `paths`, as the actors finish them."""
    import ray
    import ray.data

    ray.init(
        address=address,
        num_cpus=None if address else workers,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        gpu = device.startswith("cuda") or (device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        ray.data.DataContext.get_current().enable_progress_bars = False  # the driver draws one bar
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its plan and progress, as INFO lines
        blocks = min(len(paths), BLOCKS_PER_WORKER * workers)
        items = [{"index": i, "path": path} for i, path in enumerate(paths)]
        answers = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            RayScorer,
            fn_constructor_kwargs={"scoring": scoring, "device": "cuda" if gpu else "cpu"},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(workers, blocks)),
            num_cpus=0 if gpu else 1,
            num_gpus=1 if gpu else 0,
        )
        for batch in answers.iter_batches(batch_size=None, batch_format="numpy"):
            for index, answer in zip(batch["index"], batch["answer"]):
                yield int(index), json.loads(answer)
    finally:
        ray.shutdown()
