"""`ser`: the command-line interface. Every user error ends as one readable line and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import PRECISIONS
from .corpora import READERS
from .errors import SerError

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _synth(args) -> None:
    from .synth import synthesize_corpus

    out = synthesize_corpus(args.out, speakers=args.speakers, utterances=args.utterances, seed=args.seed)
    print(f"wrote the demo corpus to {out}")


def _prepare(args) -> None:
    from .features import DecodeConfig, PrepareConfig, prepare
    from .report import print_summary
    from .splits import SplitConfig

    cfg = PrepareConfig(
        corpora=args.corpus,
        labels=[x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else [],
        decode=DecodeConfig(
            min_seconds=args.min_seconds,
            max_seconds=args.max_seconds,
            long_clips=args.long_clips,
            trim_silence=args.trim_silence,
        ),
        max_bad_fraction=args.max_bad_fraction,
        num_proc=args.num_proc,
        backbone=args.backbone,
        splits=SplitConfig(
            validation=args.validation_size,
            test=args.test_size,
            seed=args.seed,
            scheme=args.split_by,
            folds=args.folds,
        ),
    )
    print_summary(prepare(args.data_dir, args.out, cfg))
    print(f"prepared data in {args.out} (summary.json, summary.png)")


def _train(args) -> None:
    from .train import train

    overrides = []
    if args.trainer:
        overrides.append("train.trainer=hf")
    if args.sanity:
        overrides.append("train.sanity_report=true")
    cfg = _run_config(args, overrides)
    if args.overfit_batches:
        from .sanity import overfit_batches

        done = overfit_batches(cfg, args.overfit_batches)
        print(
            f"overfit {done['batches']} batch(es): loss {done['initial_loss']:.3f} -> "
            f"{done['final_loss']:.4f} in {done['steps']} steps: the model can learn"
        )
        return
    results = train(cfg, resume=args.resume)
    if "cross_validation" in results:
        for key, stats in results["cross_validation"].items():
            print(f"{key}: {stats['mean']:.3f} ± {stats['std']:.3f} over {len(stats['folds'])} folds")
        print(f"per-fold runs and cv_metrics.json in {cfg.train.output_dir}")
        return
    _print_result(results, cfg)


def _probe(args) -> None:
    from .probe import train_probe

    cfg = _run_config(args)
    _print_result(train_probe(cfg, fold=cfg.data.fold or 0), cfg)


def _run_config(args, extra: list[str] = ()):
    """--config, then the flags that name config keys (and `extra`), then `section.key=value` overrides."""
    from .config import load_config

    flags = {
        "data.path": "data",
        "train.output_dir": "output_dir",
        "model.backbone": "backbone",
        "train.epochs": "epochs",
    }
    overrides = [f"{key}={getattr(args, name)}" for key, name in flags.items() if getattr(args, name, None)]
    return load_config(args.config, [*overrides, *extra, *args.overrides])


def _print_result(results: dict, cfg) -> None:
    test = results.get("test")
    if test:
        print(
            f"test: accuracy {test['accuracy']:.3f} · UAR {test['uar']:.3f} · macro-F1 {test['macro_f1']:.3f}"
        )
    print(f"best checkpoint: {Path(cfg.train.output_dir) / 'best'}")


def _tune(args) -> None:
    from .tune import tune

    result = tune(_run_config(args), args.trials, Path(args.output_dir))
    params = ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in result["best_params"].items()
    )
    print(f"best val UAR {result['best_value']:.4f} (trial {result['best_trial']}): {params}")
    print(f"best config: {result['best_config']} (train with `ser train --config {result['best_config']}`)")


def _lr_find(args) -> None:
    from .lr_find import lr_find

    result = lr_find(_run_config(args), args.output_dir, steps=args.steps)
    print(f"min-loss learning rate / 10: {result['min_loss_lr_over_10']:.2e}")
    print(f"plot and curve: {Path(args.output_dir) / 'lr_find.png'}, lr_find.json")
    lr = f"{result['suggestion']:.2e}"
    print(f"suggested learning rate: {lr} (set train.learning_rate={lr})")


def _evaluate(args) -> None:
    from .allocator import retain_freed_memory
    from .train import evaluate_checkpoint

    retain_freed_memory()
    metrics = evaluate_checkpoint(
        args.checkpoint, args.data, split=args.split, fold=args.fold, precision=args.precision
    )
    if args.json:
        print(json.dumps(metrics))
    else:
        print(
            f"{args.split}: accuracy {metrics['accuracy']:.3f} · UAR {metrics['uar']:.3f} "
            f"· macro-F1 {metrics['macro_f1']:.3f} ({metrics['samples']} clips, {metrics['precision']})"
        )


def _predict(args) -> None:
    from .inference import Predictor

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise SerError(f"file not found: {missing[0]}")
    from .allocator import retain_freed_memory
    from .audio import load_audio
    from .timeline import Options, classify_wave

    options = Options(args.top_k, args.window_s, args.hop_s)
    retain_freed_memory()
    predictor = Predictor.from_pretrained(args.checkpoint, precision=args.precision)
    options.check(len(predictor.labels))
    for path in args.files:
        wave = load_audio(path, predictor.sampling_rate)
        answer = classify_wave(
            wave, predictor.sampling_rate, predictor.labels, predictor.probabilities, options
        )
        print(json.dumps({"file": path, **answer}), flush=True)


def _export(args) -> None:
    from .export import export_checkpoint

    print(f"exported to the BentoML model store as {export_checkpoint(args.checkpoint, name=args.name)}")


def _serve(args) -> int:
    from .serving import serve

    return serve(port=args.port, host=args.host)


PRECISION_HELP = (
    "auto: bf16 where the hardware runs it natively, else fp32; int8: dynamic int8 linear layers (CPU)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ser", description="Speech emotion recognition toolkit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("synth", help="synthesize the demo emotional-speech corpus")
    p.add_argument("--out", required=True)
    p.add_argument("--speakers", type=int, default=40)
    p.add_argument("--utterances", type=int, default=6, help="clips per speaker and emotion")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_synth)

    p = sub.add_parser("prepare", help="read, split and preprocess a corpus with `datasets`")
    p.add_argument(
        "--corpus",
        nargs="+",
        default=["auto"],
        choices=["auto", *READERS],
        help="one reader for all data dirs, or one per data dir",
    )
    p.add_argument("--data-dir", nargs="+", required=True, help="one or more corpora to combine")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", help="keep only these labels, comma-separated (e.g. neutral,happy,sad,angry)")
    p.add_argument("--backbone", help="apply this model's feature extractor (default: the small model's)")
    p.add_argument("--split-by", default="auto", choices=["auto", "speaker", "sentence", "clip"])
    p.add_argument("--folds", default="1", help="1 (one split), K (K-fold by group) or loso")
    p.add_argument("--validation-size", type=float, default=0.15, help="share of speakers")
    p.add_argument("--test-size", type=float, default=0.2, help="share of speakers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-seconds", type=float, default=0.2, help="shorter clips are skipped")
    p.add_argument("--max-seconds", type=float, default=30.0)
    p.add_argument(
        "--long-clips", choices=["crop", "skip"], default="crop", help="policy above --max-seconds"
    )
    p.add_argument("--trim-silence", action="store_true", help="drop leading and trailing silence")
    p.add_argument("--max-bad-fraction", type=float, default=0.2, help="stop above this share of bad files")
    p.add_argument("--num-proc", type=int, default=1)
    p.set_defaults(func=_prepare)

    p = sub.add_parser("train", help="fine-tune with the Accelerate loop")
    p.add_argument("--config", help="YAML file (see configs/)")
    p.add_argument("--data", help="prepared data directory (data.path)")
    p.add_argument("--output-dir", help="run directory (train.output_dir)")
    p.add_argument("--backbone", help="Hub id or local directory (model.backbone)")
    p.add_argument("--resume", action="store_true", help="continue from the newest full checkpoint")
    p.add_argument("--trainer", action="store_true", help="use transformers.Trainer (train.trainer=hf)")
    p.add_argument("--sanity", action="store_true", help="print a data sanity report before the first step")
    p.add_argument(
        "--overfit-batches", type=int, metavar="N", help="only check that N batches can be overfitted"
    )
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    p.set_defaults(func=_train)

    p = sub.add_parser("probe", help="train a layer-weighted head on a frozen backbone's cached features")
    p.add_argument("--config", help="YAML file (see configs/)")
    p.add_argument("--data", help="prepared data directory (data.path)")
    p.add_argument("--output-dir", help="run directory (train.output_dir)")
    p.add_argument("--backbone", help="Hub id or local directory (model.backbone)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    p.set_defaults(func=_probe)

    for name, func, help_text in (
        ("tune", _tune, "search learning rate, batch size, dropout and freezing with Optuna (pruned trials)"),
        ("lr-find", _lr_find, "learning-rate range test: loss-vs-LR plot and a suggested learning rate"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", help="YAML file (see configs/)")
        p.add_argument("--data", help="prepared data directory (data.path)")
        p.add_argument("--output-dir", required=True, help="where the results go")
        p.add_argument("--backbone", help="Hub id or local directory (model.backbone)")
        if name == "tune":
            p.add_argument("--epochs", type=int, help="epochs per trial (train.epochs)")
            p.add_argument("--trials", type=int, default=20, help="finished trials (a rerun continues)")
        else:
            p.add_argument("--steps", type=int, default=100, help="batches of the sweep (1e-7 to 10)")
        p.add_argument("overrides", nargs="*", metavar="section.key=value")
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on prepared data")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help=f"default fp32, as training; {PRECISION_HELP}"
    )
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="classify audio files (one JSON line each, as the REST API answers)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--top-k", type=int, help="only the k most probable labels, best first")
    p.add_argument("--window-s", type=float, help="add a timeline of windows this long (seconds)")
    p.add_argument("--hop-s", type=float, help="seconds between window starts (default: the window)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=f"default auto; {PRECISION_HELP}")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_predict)

    p = sub.add_parser("export", help="import a checkpoint into the BentoML model store")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--name", default="ser-emotion")
    p.set_defaults(func=_export)

    p = sub.add_parser("serve", help="start the BentoML server (REST + Gradio at /ui)")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--host", default="0.0.0.0")
    p.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except SerError as err:
        print(f"ser {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
