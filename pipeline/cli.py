"""`ser`: the command-line interface. Every user error ends as one readable line and exit code 2.

The flags of `synth`, `prepare`, `train`, `probe`, `tune`, `lr-find` and `predict` are derived from
the configuration dataclasses (`pipeline.arguments`): their defaults and help are written once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .arguments import add_flags, from_flags, given_flags, int_list, positive_int
from .config import BACKENDS, PRECISIONS, Config, PrepareConfig, SynthConfig, load_config
from .errors import SerError
from .functionals import FEATURE_SETS
from .inference.answers import Options
from .inference.vad import VadConfig
from .reports import print_cross_validation, print_result, print_seeds, scores

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _synth(args) -> None:
    from .data.synth import synthesize_corpus

    cfg = from_flags(SynthConfig, args)
    out = synthesize_corpus(args.out, speakers=cfg.speakers, utterances=cfg.utterances, seed=cfg.seed)
    print(f"wrote the demo corpus to {out}")


def _prepare(args) -> None:
    from .data.prepare import prepare
    from .data.report import print_summary

    print_summary(prepare(args.data_dir, args.out, from_flags(PrepareConfig, args)))
    print(f"prepared data in {args.out} (summary.json, summary.png)")


def _run_config(args) -> Config:
    """Defaults, then --config, then the flags given, then `section.key=value` overrides."""
    return load_config(args.config, args.overrides, given_flags(args))


def _train(args) -> None:
    cfg = _run_config(args)
    if args.overfit_batches:
        from .training.sanity import overfit_batches

        done = overfit_batches(cfg, args.overfit_batches)
        print(
            f"overfit {done['batches']} batch(es): loss {done['initial_loss']:.3f} -> "
            f"{done['final_loss']:.4f} in {done['steps']} steps: the model can learn"
        )
        return
    from .training.run import train, train_seeds

    if args.seeds:
        print_seeds(train_seeds(cfg, args.seeds, resume=args.resume, jobs=args.jobs))
        print(f"per-seed runs and seeds_metrics.json in {cfg.train.output_dir}")
        return
    results = train(cfg, resume=args.resume, jobs=args.jobs)
    if "cross_validation" in results:
        print_cross_validation(results["cross_validation"])
        print(f"per-fold runs and cv_metrics.json in {cfg.train.output_dir}")
        return
    print_result(results, cfg)


def _probe(args) -> None:
    from .training.probe import train_probe

    cfg = _run_config(args)
    print_result(train_probe(cfg, fold=cfg.data.fold or 0), cfg)


def _baseline(args) -> None:
    from .data.functionals_cache import table_functionals
    from .data.prepared import fold_count
    from .metrics import fold_summary
    from .training.baseline import baseline_metrics

    table_functionals(args.data, args.features, args.num_proc)  # computed once, in parallel
    runs = []
    for fold in range(fold_count(args.data)) if args.folds else [args.fold]:
        runs.append(baseline_metrics(args.data, fold, args.features))
        if not args.json:
            print(f"fold {fold}: test {scores(runs[-1]['test'])}")
    summary = fold_summary([run["test"] for run in runs])
    if args.json:
        print(json.dumps({"folds": runs, "cross_validation": summary} if args.folds else runs[0]))
    elif args.folds:
        for key, stats in summary.items():
            print(f"{key}: {stats['mean']:.3f} ± {stats['std']:.3f} over {len(runs)} folds")


def _tune(args) -> None:
    from .training.tune import tune

    result = tune(_run_config(args), args.trials, Path(args.output_dir))
    params = ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in result["best_params"].items()
    )
    print(f"best val UAR {result['best_value']:.4f} (trial {result['best_trial']}): {params}")
    print(f"best config: {result['best_config']} (train with `ser train --config {result['best_config']}`)")


def _lr_find(args) -> None:
    from .training.lr_find import lr_find

    result = lr_find(_run_config(args), args.output_dir, steps=args.steps)
    print(f"min-loss learning rate / 10: {result['min_loss_lr_over_10']:.2e}")
    print(f"plot and curve: {Path(args.output_dir) / 'lr_find.png'}, lr_find.json")
    lr = f"{result['suggestion']:.2e}"
    print(f"suggested learning rate: {lr} (set train.learning_rate={lr})")


def _evaluate(args) -> None:
    from .inference.evaluate import evaluate_checkpoint
    from .inference.memory import retain_freed_memory

    retain_freed_memory()
    metrics = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        split=args.split,
        fold=args.fold,
        batch_size=args.batch_size,
        precision=args.precision,
        backend=args.backend,
    )
    if args.json:
        print(json.dumps(metrics))
    else:
        print(
            f"{args.split}: accuracy {metrics['accuracy']:.3f} · UAR {metrics['uar']:.3f} "
            f"· macro-F1 {metrics['macro_f1']:.3f} "
            f"({metrics['samples']} clips, {metrics['backend']} {metrics['precision']})"
        )


def _predict(args) -> None:
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise SerError(f"file not found: {missing[0]}")
    from .inference.recording import predict_files

    options, vad = from_flags(Options, args), from_flags(VadConfig, args)
    for answer in predict_files(
        args.files, args.checkpoint, options, vad, args.output, args.precision, args.backend
    ):
        print(json.dumps(answer), flush=True)


def _export(args) -> None:
    from .inference.export import export_checkpoint

    tag = export_checkpoint(args.checkpoint, name=args.name, onnx=args.onnx)
    print(f"exported to the BentoML model store as {tag}")


def _serve(args) -> int:
    from .inference.serve import serve

    return serve(port=args.port, host=args.host)


TUNE_HELP = "search learning rate, batch size, dropout and freezing with Optuna (pruned trials)"
LR_FIND_HELP = "learning-rate range test: loss-vs-LR plot and a suggested learning rate"
PRECISION_HELP = (
    "auto: bf16 where the hardware runs it natively, else fp32; int8: dynamic int8 linear layers (CPU)"
)
BACKEND_HELP = (
    "onnx: ONNX Runtime, CPU (the serving install); torch: PyTorch (the full install: GPUs, bf16); "
    "auto: onnx on the CPU where the checkpoint has ONNX models (`ser export`) or torch is absent"
)


def _run_parser(sub, name: str, help_text: str, func, results: str = "") -> argparse.ArgumentParser:
    """A command that runs the configuration: --config, one flag per key, `section.key=value`; with
    `results`, its own required --output-dir instead of train.output_dir."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--config", help="YAML file of the keys that differ from the defaults (see configs/)")
    add_flags(p, Config, skip=("train.output_dir",) if results else ())
    if results:
        p.add_argument("--output-dir", required=True, help=f"where {results} go")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ser", description="Speech emotion recognition toolkit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("synth", help="synthesize the demo emotional-speech corpus")
    p.add_argument("--out", required=True)
    add_flags(p, SynthConfig)
    p.set_defaults(func=_synth)

    p = sub.add_parser("prepare", help="read, split and preprocess a corpus with `datasets`")
    p.add_argument("--data-dir", nargs="+", required=True, help="one or more corpora to combine")
    p.add_argument("--out", required=True)
    add_flags(p, PrepareConfig)
    p.set_defaults(func=_prepare)

    p = _run_parser(sub, "train", "fine-tune with the Accelerate loop (or transformers.Trainer)", _train)
    p.add_argument("--resume", action="store_true", help="continue from the newest full checkpoint")
    p.add_argument(
        "--seeds",
        type=int_list,
        metavar="N,N,...",
        help="train once per seed (OUTPUT_DIR/seed<N>/), comma-separated: mean ± std over seeds",
    )
    jobs_help = "runs (folds, seeds) at once on a CPU, one thread each; default: one per core"
    p.add_argument("--jobs", type=positive_int, metavar="N", help=jobs_help)
    p.add_argument(
        "--overfit-batches", type=int, metavar="N", help="only check that N batches can be overfitted"
    )
    _run_parser(sub, "probe", "train a layer-weighted head on a frozen backbone's cached features", _probe)
    p = _run_parser(sub, "tune", TUNE_HELP, _tune, results="the study and its trials")
    p.add_argument("--trials", type=int, default=20, help="finished trials (a rerun continues)")
    p = _run_parser(sub, "lr-find", LR_FIND_HELP, _lr_find, results="the plot and the curve")
    p.add_argument("--steps", type=int, default=100, help="batches of the sweep (1e-7 to 10)")

    p = sub.add_parser("baseline", help="the classical reference: openSMILE functionals + a linear SVM")
    p.add_argument("--data", required=True, help="prepared data directory (`ser prepare --out`)")
    p.add_argument(
        "--features",
        choices=tuple(FEATURE_SETS),
        default="compare",
        help="compare: openSMILE ComParE_2016 (6,373); egemaps: eGeMAPSv02 (88); mfcc: MFCC statistics (120)",
    )
    p.add_argument("--num-proc", type=int, default=1, help="processes computing the functionals (cached)")
    p.add_argument("--fold", type=int, default=0, help="fold of the prepared splits")
    p.add_argument("--folds", action="store_true", help="every fold, with mean ± std")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_baseline)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on prepared data (as `ser predict` sees it)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help=f"default fp32, as training; {PRECISION_HELP}"
    )
    p.add_argument("--backend", choices=BACKENDS, default="torch", help=f"default torch; {BACKEND_HELP}")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="classify audio files (one JSON line each, as the REST API answers)")
    p.add_argument("--checkpoint", required=True)
    add_flags(p, Options)
    add_flags(p, VadConfig)
    p.add_argument("--output", help="write the timeline (one line per segment) to this .jsonl or .csv file")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=f"default auto; {PRECISION_HELP}")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help=f"default auto; {BACKEND_HELP}")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "export", help="import a checkpoint into the BentoML model store, with its ONNX models (fp32, int8)"
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--name", default="ser-emotion")
    p.add_argument(
        "--no-onnx", dest="onnx", action="store_false", help="without the ONNX models (torch backend only)"
    )
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
