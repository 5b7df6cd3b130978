"""`python -m demo --api URL`: the demo on its own, against any running REST endpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from demo.app import build_demo, example_clips
from pipeline.data.audio import TARGET_SAMPLING_RATE
from pipeline.errors import InputError
from pipeline.inference.answers import Options


class RemoteModel:
    """The REST API at `url`, called the way the demo calls the service in-process."""

    def __init__(self, url: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.info = self._answer(httpx.post(f"{self.url}/info", timeout=timeout))

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            raise InputError(message)
        return response.json()

    def classify(self, path: str, options: Options) -> dict[str, Any]:
        fields = {k: str(v) for k, v in vars(options).items() if v is not None}
        with open(path, "rb") as f:
            response = httpx.post(
                f"{self.url}/classify",
                files={"audio": (Path(path).name, f)},
                data=fields,
                timeout=self.timeout,
            )
        return self._answer(response)

    def probabilities(self, waves: list[np.ndarray]) -> np.ndarray:
        """One row of class probabilities per 16 kHz wave, in the order of the API's labels: the
        live tab's model."""
        rows = []
        for wave in waves:
            response = httpx.post(
                f"{self.url}/classify_array",
                json={"samples": wave.tolist(), "sampling_rate": TARGET_SAMPLING_RATE},
                timeout=self.timeout,
            )
            scores = self._answer(response)["scores"]
            rows.append([scores[label] for label in self.info["labels"]])
        return np.array(rows, np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description="Gradio demo for a running SER REST API"
    )
    parser.add_argument("--api", required=True, help="base URL of the REST API, e.g. http://localhost:3000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    try:
        remote = RemoteModel(args.api)
    except (httpx.HTTPError, InputError) as err:
        parser.exit(1, f"python -m demo: error: cannot reach the REST API at {args.api}: {err}\n")
    demo = build_demo(
        remote.classify,
        remote.info["labels"],
        remote.info["model"],
        example_clips(),
        live=remote.probabilities,
    )
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=int(remote.info["max_upload_mb"] * 2**20),
    )


if __name__ == "__main__":
    main()
