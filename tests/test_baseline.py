"""`ser baseline`: utterance functionals (openSMILE ComParE_2016, eGeMAPSv02, MFCC statistics) and a
linear SVM on the prepared (speaker-independent) splits, reported beside every trained model."""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.metrics import recall_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from pipeline.data.functionals_cache import table_functionals
from pipeline.data.prepared import fold_count, fold_plan, load_prepared
from pipeline.functionals import FEATURE_SETS, feature_count, functionals, smile_functionals, thread_budget
from pipeline.training.baseline import SVM_C, fit_and_score

LABELS = ["a", "b", "c"]
SR = 16_000


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, 8)) + 1.5 * np.eye(3, 8)[y], y


def _voice(f0: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(np.linspace(f0, 1.3 * f0, t.size)) / SR
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (sum(np.sin(k * phase) / k for k in range(1, 8)) * np.hanning(t.size) * 0.2 + noise).astype(
        np.float32
    )


@pytest.mark.fast
def test_the_classifier_is_a_linear_svm_fitted_on_training_and_validation_speakers():
    split = dict(zip(("train", "validation", "test"), (_blobs(n, s) for n, s in ((60, 0), (30, 1), (60, 2)))))
    features, targets = {k: v[0] for k, v in split.items()}, {k: v[1] for k, v in split.items()}
    found = fit_and_score(features, targets, LABELS)

    seen_x = np.concatenate([features["train"], features["validation"]])
    seen_y = np.concatenate([targets["train"], targets["validation"]])
    scaler = StandardScaler().fit(seen_x)
    svm = LinearSVC(C=SVM_C, class_weight="balanced", max_iter=20_000).fit(scaler.transform(seen_x), seen_y)
    predicted = svm.predict(scaler.transform(features["test"]))
    assert found["test"]["uar"] == pytest.approx(recall_score(targets["test"], predicted, average="macro"))
    assert found["test"]["accuracy"] == pytest.approx(np.mean(predicted == targets["test"]))
    assert found["test"]["uar"] > 0.6  # the blobs are learnable: the fit is real
    assert set(found) == {"test"}  # validation was trained on: never scored as if held out


@pytest.mark.fast
@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_functionals_describe_the_voice_whatever_its_level(feature_set):
    low, high = _voice(120), _voice(260, seed=1)
    rows = functionals([low, high, 0.05 * low + 0.01], SR, feature_set)
    assert rows.shape == (3, feature_count(feature_set)) and rows.dtype == np.float32
    assert np.isfinite(rows).all()
    scale = np.abs(rows[:2]).max(axis=0) + 1e-3
    same = np.abs((rows[0] - rows[2]) / scale)  # another gain and offset: the same row (float32 noise)
    assert np.quantile(same, 0.99) < 1e-2 and same.max() < 0.1
    assert np.abs((rows[0] - rows[1]) / scale).max() > 0.1  # another voice: another row


@pytest.mark.fast
def test_functionals_computed_in_threads_at_once_equal_those_computed_one_by_one(monkeypatch):
    """A list's clips are computed in threads, and the server computes the head's functionals in
    each request's thread, all sharing one openSMILE extractor (it releases the GIL)."""
    voices = [_voice(100 + 20 * i, seconds=0.5 + 0.25 * (i % 4), seed=i) for i in range(12)]
    alone = np.stack([functionals([voice], SR, "compare")[0] for voice in voices])
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda voice: functionals([voice], SR, "compare")[0], voices))
    np.testing.assert_array_equal(np.stack(together), alone)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_budget() == 3
    np.testing.assert_array_equal(functionals(voices, SR, "compare"), alone)  # the list, in 3 threads


@pytest.mark.fast
@pytest.mark.parametrize("feature_set", ["compare", "egemaps"])
def test_openSMILE_called_directly_gives_the_opensmile_packages_rows(feature_set):
    """`smile_functionals` calls SMILEapi through the wheel's binding without `import opensmile`
    (whose pandas stack a server would carry): the rows of `opensmile.Smile.process_signal`, bit for
    bit, including a clip too short for any functional (NaN)."""
    import opensmile

    sets = {"compare": opensmile.FeatureSet.ComParE_2016, "egemaps": opensmile.FeatureSet.eGeMAPSv02}
    smile = opensmile.Smile(feature_set=sets[feature_set], feature_level=opensmile.FeatureLevel.Functionals)
    for wave in (_voice(140, seconds=1.3), _voice(220, seconds=0.4, seed=2), np.zeros(80, np.float32)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Segment too short, filling with NaN."
            expected = smile.process_signal(wave, SR).to_numpy()[0]
        np.testing.assert_array_equal(smile_functionals(wave, SR, feature_set), expected)


@pytest.mark.fast
def test_an_unknown_feature_set_is_refused():
    with pytest.raises(ValueError, match="unknown feature set 'is10'"):
        functionals([_voice(120)], SR, "is10")


def test_ser_baseline_scores_held_out_speakers_on_every_fold(prepared, ser_here):
    cached = prepared / "functionals" / "compare.npy"
    assert cached.is_file()  # `ser prepare` computed the default set once
    stamp = cached.stat().st_mtime_ns
    done = json.loads(ser_here("baseline", "--data", str(prepared), "--json").stdout)
    assert cached.stat().st_mtime_ns == stamp  # read, not computed again
    assert len(done["folds"]) == fold_count(prepared)
    for fold, run in enumerate(done["folds"]):
        dataset = load_prepared(prepared, fold)[0]
        assert run["test"]["samples"] == len(dataset["test"])
        assert not set(dataset["test"]["speaker"]) & set(dataset["train"]["speaker"])  # held out
        assert run["features"] == FEATURE_SETS["compare"] and "linear SVM" in run["classifier"]
    assert done["cross_validation"]["uar"]["mean"] == pytest.approx(
        np.mean([run["test"]["uar"] for run in done["folds"]])
    )
    egemaps = json.loads(
        ser_here("baseline", "--data", str(prepared), "--fold", "0", "--features", "egemaps", "--json").stdout
    )
    assert egemaps["features"] == FEATURE_SETS["egemaps"]
    assert (prepared / "functionals" / "egemaps.npy").is_file()


def test_cached_functionals_are_the_clips_own_and_go_stale_with_the_data(prepared, tmp_path):
    table = table_functionals(prepared, "mfcc")
    dataset = load_prepared(prepared, 0)[0]
    audio = dataset["test"].with_format("numpy", columns=["input_values"])
    rows = fold_plan(prepared, 0)[0]["test"]
    direct = functionals([audio[i]["input_values"] for i in range(2)], SR, "mfcc")
    np.testing.assert_allclose(table[rows[:2]], direct, rtol=1e-5, atol=1e-4)  # in the table's row order
    summary = json.loads((prepared / "summary.json").read_text())
    stamp = prepared / "functionals" / "mfcc.json"
    stamp.write_text(json.dumps({"inputs": "another prepare"}))
    again = table_functionals(prepared, "mfcc", num_proc=2)  # stale: computed anew, in two processes
    np.testing.assert_allclose(again, table, rtol=1e-5, atol=1e-4)
    assert json.loads(stamp.read_text())["inputs"] == summary["inputs"]


def test_every_training_report_holds_the_baselines_of_its_split(trained, prepared, ser_here):
    metrics = json.loads((trained / "metrics.json").read_text())
    card = (trained / "best" / "README.md").read_text()
    assert list(metrics["baselines"]) == ["compare", "mfcc"]  # the strongest first
    for name, run in metrics["baselines"].items():
        command = ("baseline", "--data", str(prepared), "--fold", "0", "--features", name, "--json")
        alone = json.loads(ser_here(*command).stdout)
        assert run["test"] == alone["test"]  # the same split, the same numbers
        assert f"{alone['test']['uar']:.3f}" in card
    assert "chance UAR 0.250" in card and "test speakers seen in training: none" in card
