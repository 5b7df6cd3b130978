"""Utterance-level acoustic functionals: one fixed-length row of statistics per clip, what the
classical baselines (`ser baseline`) and the recipe's functionals head (`pipeline.fusion`) read.

openSMILE's ComParE_2016 set (6,373 functionals of energy, spectral, MFCC and voicing descriptors:
the Interspeech ComParE challenges' baseline features) and eGeMAPSv02 (88), computed by audEERING's
`opensmile` (SMILExtract ships inside its wheel; its C API is called through the wheel's own
ctypes binding, without the package's pandas stack: `_smile_api`), and MFCC statistics (120,
torchaudio). Every clip is first scaled to the same RMS level: a copy of a corpus recorded,
resampled or normalised differently gives the same features, and so does a clip at inference.
openSMILE releases the GIL, so the clips of a list are computed in threads at once
(`thread_budget`), with the same rows; at most that many at once in a process (a server's request
threads), as more only hold more memory.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

FEATURE_SETS = {
    "compare": "openSMILE ComParE_2016 functionals (6,373)",
    "egemaps": "openSMILE eGeMAPSv02 functionals (88)",
    "mfcc": "MFCC statistics (120)",
}
RMS_LEVEL = 0.1  # every clip is scaled to this RMS (-20 dBFS) before its functionals
N_MFCC = 20


def level_normalised(wave: np.ndarray) -> np.ndarray:
    """`wave` without its DC offset, scaled to an RMS of `RMS_LEVEL` (float32)."""
    wave = np.asarray(wave, dtype=np.float64)
    wave = wave - wave.mean()
    return (wave * (RMS_LEVEL / (np.sqrt(np.mean(wave**2)) + 1e-12))).astype(np.float32)


def available_cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_budget() -> int:
    """Threads this process may use: `OMP_NUM_THREADS` where set (`ser train --jobs` workers set 1),
    else the cores it may run on."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else available_cores()


SMILE_CONFIGS = {"compare": "compare/ComParE_2016", "egemaps": "egemaps/v02/eGeMAPSv02"}


@functools.cache
def _smile_api():
    """(openSMILE's ctypes binding, its config directory) from the `opensmile` wheel, without the
    package: `import opensmile` brings audinterface, audformat, pandas and pyarrow (90 MB resident
    and a second in a server) for a C call that needs none of them."""
    core = Path(importlib.util.find_spec("opensmile").submodule_search_locations[0]) / "core"
    spec = importlib.util.spec_from_file_location("opensmile_smileapi", core / "lib.py")
    binding = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(binding)
    return binding, core / "config"


@functools.cache
def _smile_slots() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(thread_budget())


def smile_functionals(wave: np.ndarray, sampling_rate: int, feature_set: str) -> np.ndarray:
    """The openSMILE functionals of one clip: what `opensmile.Smile(feature_set,
    FeatureLevel.Functionals).process_signal` computes (the same configuration and 16-bit samples;
    the same row, tested), at most `thread_budget()` clips at once."""
    binding, config = _smile_api()
    shared = config / "shared"
    options = {
        "sink": shared / "standard_external_data_output_single.conf.inc",
        "sinkLevel": "func",
        "bufferModeRbConf": shared / "BufferModeRb.conf.inc",
        "frameModeFunctionalsConf": shared / "FrameModeFunctionals.conf.inc",
        "source": shared / "standard_external_wave_input.conf.inc",
        "sampleRate": sampling_rate,
        "nBits": 16,
    }
    rows = []
    with _smile_slots():
        smile = binding.OpenSMILE()
        smile.initialize(str(config / f"{SMILE_CONFIGS[feature_set]}.conf"), options)
        try:
            smile.external_sink_set_callback_ex("extsink", lambda data, _: rows.append(data.copy()))
            samples = (np.asarray(wave, np.float32) * np.float32(32768)).astype(np.int16)
            smile.external_audio_source_write_data("extsource", samples.tobytes())
            smile.external_audio_source_set_eoi("extsource")
            smile.run()
        finally:
            smile.free()
    return rows[0].reshape(-1) if rows else np.full(feature_count(feature_set), np.nan, np.float32)


def _mfcc_statistics(sampling_rate: int):
    """One clip -> mean and standard deviation over time of 20 MFCCs (25-ms windows every 10 ms, 40
    mel bands), their deltas and delta-deltas."""
    import torch
    import torchaudio.functional as AF
    import torchaudio.transforms as T

    mfcc = T.MFCC(
        sample_rate=sampling_rate,
        n_mfcc=N_MFCC,
        melkwargs={
            "n_fft": int(0.025 * sampling_rate),
            "hop_length": int(0.01 * sampling_rate),
            "n_mels": 40,
        },
    )

    def row(wave: np.ndarray) -> np.ndarray:
        coefficients = mfcc(torch.from_numpy(wave))
        deltas = AF.compute_deltas(coefficients)
        tracks = torch.cat([coefficients, deltas, AF.compute_deltas(deltas)])
        return torch.cat([tracks.mean(-1), tracks.std(-1, unbiased=False)]).numpy()

    return row


def _each(compute, items: list, workers: int, done) -> list:
    """[compute(item) for item in items], in `workers` threads where more than one; `done()` after each."""
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        found = []
        for result in pool.map(compute, items) if pool else map(compute, items):
            found.append(result)
            done()
        return found


def functionals(
    waves, sampling_rate: int, feature_set: str = "compare", progress: bool = False
) -> np.ndarray:
    """[clips, features] float32: the `feature_set` (a key of `FEATURE_SETS`) of each 1-D waveform."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose from {', '.join(FEATURE_SETS)}")
    if feature_set == "mfcc":
        import torch

        row, threads = _mfcc_statistics(sampling_rate), torch.get_num_threads()
        torch.set_num_threads(1)  # one clip's small transforms: threads only wait for each other
        workers = 1
    else:
        row, threads = (lambda wave: smile_functionals(wave, sampling_rate, feature_set)), None
        workers = min(thread_budget(), len(waves))
    try:
        with tqdm(total=len(waves), desc=feature_set, leave=False, disable=not progress) as bar:
            rows = _each(lambda wave: row(level_normalised(wave)), waves, workers, bar.update)
    finally:
        if threads is not None:
            torch.set_num_threads(threads)
    width = feature_count(feature_set)
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, width), dtype=np.float32)


def feature_count(feature_set: str) -> int:
    """Functionals per clip of `feature_set`."""
    return {"compare": 6373, "egemaps": 88, "mfcc": 6 * N_MFCC}[feature_set]
