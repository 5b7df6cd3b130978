"""`ser`: the command-line interface. Every user error ends as one readable line and exit code 2.

Every subcommand's flags are derived from dataclasses (`pipeline.arguments`): the run configuration
(`pipeline.config`) and the commands' options (`pipeline.commands`); their names, defaults and help
are written once, and one concept has one flag name everywhere (`--output-dir`, `--checkpoint`,
`--data`, `--fold`, `--precision`, `--backend`, `--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

from .arguments import add_flags, config_fields, from_flags, given_flags, int_list, positive_int
from .commands import EXAMPLES, BaselineArgs, EvaluateArgs, ExportArgs, PredictArgs, ServeArgs, TrainArgs
from .config import Config, load_config
from .data.prepare_config import PrepareConfig, SynthConfig
from .errors import SerError
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
    out = synthesize_corpus(args.output_dir, speakers=cfg.speakers, utterances=cfg.utterances, seed=cfg.seed)
    print(f"wrote the demo corpus to {out}")


def _prepare(args) -> None:
    from .data.prepare import prepare
    from .data.report import print_summary

    print_summary(prepare(args.data_dir, args.output_dir, from_flags(PrepareConfig, args)))
    print(f"prepared data in {args.output_dir} (summary.json, summary.png)")


CONFIG_KEYS = {name for name, _, _ in config_fields(Config)}  # the flags that set the configuration
FINISHED = ("metrics.json", "cv_metrics.json", "seeds_metrics.json", "lr_find.json")


def _run_config(args) -> Config:
    """Defaults, then --config, then the flags given, then `section.key=value` overrides; a run
    directory that holds a finished run is refused without --overwrite (or --resume)."""
    flags = {name: value for name, value in given_flags(args).items() if name in CONFIG_KEYS}
    cfg = load_config(args.config, args.overrides, flags)
    out = Path(getattr(args, "output_dir", None) or cfg.train.output_dir)
    finished = [name for name in FINISHED if (out / name).is_file()]
    if finished and not (args.overwrite or getattr(args, "resume", False)):
        raise SerError(
            f"{out} holds a finished run ({finished[0]}): add --overwrite, or choose another --output-dir"
        )
    return cfg


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
    if os.environ.get("RANK", "0") != "0":
        return  # one of several processes (`accelerate launch`): the first reports
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

    cfg = from_flags(BaselineArgs, args)
    table_functionals(cfg.data, cfg.features, cfg.num_proc)  # computed once, in parallel
    folds = range(fold_count(cfg.data)) if cfg.fold is None else [cfg.fold]
    runs = []
    for fold in folds:
        runs.append(baseline_metrics(cfg.data, fold, cfg.features))
        if not cfg.json:
            print(f"fold {fold}: test {scores(runs[-1]['test'])}")
    summary = fold_summary([run["test"] for run in runs])
    if cfg.json:
        print(json.dumps({"folds": runs, "cross_validation": summary} if cfg.fold is None else runs[0]))
    elif cfg.fold is None:
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

    cfg = from_flags(EvaluateArgs, args)
    retain_freed_memory()
    metrics = evaluate_checkpoint(
        cfg.checkpoint,
        cfg.data,
        cfg.split,
        cfg.fold,
        cfg.batch_size,
        cfg.runtime.precision,
        cfg.runtime.backend,
        cfg.runtime.device,
    )
    if cfg.json:
        print(json.dumps(metrics))
    else:
        print(
            f"{cfg.split} (fold {metrics['fold']}): accuracy {metrics['accuracy']:.3f} "
            f"· UAR {metrics['uar']:.3f} · macro-F1 {metrics['macro_f1']:.3f} "
            f"({metrics['samples']} clips, {metrics['backend']} {metrics['precision']})"
        )


def _predict(args) -> None:
    cfg, options, vad = from_flags(PredictArgs, args), from_flags(Options, args), from_flags(VadConfig, args)
    if cfg.archive.output_dir:
        from .inference.archive_job import score_archive

        print(score_archive(args.files, cfg, options, vad))
        return
    from .inference.recording import predict_files

    for answer in predict_files(args.files, cfg.checkpoint, options, vad, cfg.output, cfg.runtime):
        print(json.dumps(answer), flush=True)


def _export(args) -> None:
    from .inference.export import export_checkpoint

    cfg = from_flags(ExportArgs, args)
    tag = export_checkpoint(cfg.checkpoint, name=cfg.name, onnx=cfg.onnx)
    print(f"exported to the BentoML model store as {tag}")


def _serve(args) -> int:
    from .inference.serve import serve

    cfg = from_flags(ServeArgs, args)
    return serve(cfg.model, port=cfg.port, host=cfg.host)


def _command(sub, name: str, help_text: str, func, *sources: type) -> argparse.ArgumentParser:
    """A subcommand with an example in its help and a flag per field of each of `sources`."""
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for source in sources:
        add_flags(p, source)
    p.set_defaults(func=func)
    return p


def _output_dir(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--output-dir", required=True, help=f"where {what} go (required)")


def _run_parser(sub, name: str, help_text: str, func, results: str = "") -> argparse.ArgumentParser:
    """A command that runs the configuration: --config, one flag per key, `section.key=value`; with
    `results`, its own required --output-dir instead of train.output_dir."""
    p = _command(sub, name, help_text, func)
    p.add_argument("--config", help="YAML file of the keys that differ from the defaults (default: none)")
    add_flags(p, Config, skip=("train.output_dir",) if results else ())
    if results:
        _output_dir(p, results)
    p.add_argument("--overwrite", action="store_true", help="replace a finished run there (default: off)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="any config key (default: none)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ser", description="Speech emotion recognition toolkit")
    parser.add_argument("--version", action="version", version=f"ser {version('ser-toolkit')}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = _command(sub, "synth", "synthesize the demo emotional-speech corpus", _synth, SynthConfig)
    _output_dir(p, "the corpus's clips and metadata.csv")
    p = _command(
        sub, "prepare", "read, split and preprocess corpora with `datasets`", _prepare, PrepareConfig
    )
    p.add_argument("--data-dir", nargs="+", required=True, help="one or more corpora to combine (required)")
    _output_dir(p, "the prepared table, its splits and summary")

    p = _run_parser(sub, "train", "fine-tune with the Accelerate loop (or transformers.Trainer)", _train)
    add_flags(p, TrainArgs)
    p.add_argument(
        "--seeds",
        type=int_list,
        metavar="N,N,...",
        help="train once per seed (OUTPUT_DIR/seed<N>/): mean ± std over seeds (default: one run)",
    )
    jobs_help = "runs (folds, seeds) at once on a CPU, one thread each (default: one per core)"
    p.add_argument("--jobs", type=positive_int, metavar="N", help=jobs_help)
    probe_help = "train a layer-weighted head on a frozen backbone's cached features"
    _run_parser(sub, "probe", probe_help, _probe)
    tune_help = "search learning rate, batch size, dropout and freezing with Optuna (pruned trials)"
    p = _run_parser(sub, "tune", tune_help, _tune, results="the study and its trials")
    p.add_argument("--trials", type=int, default=20, help="finished trials; a rerun continues (default: 20)")
    lr_help = "learning-rate range test: loss-vs-LR plot and a suggested learning rate"
    p = _run_parser(sub, "lr-find", lr_help, _lr_find, results="the plot and the curve")
    p.add_argument("--steps", type=int, default=100, help="batches of the sweep, 1e-7 to 10 (default: 100)")

    baseline_help = "the classical reference: openSMILE functionals + a linear SVM"
    _command(sub, "baseline", baseline_help, _baseline, BaselineArgs)
    evaluate_help = "metrics of a checkpoint on prepared data (as `ser predict` sees it)"
    _command(sub, "evaluate", evaluate_help, _evaluate, EvaluateArgs)
    predict_help = "classify audio files (one JSON line each, as the REST API answers)"
    p = _command(sub, "predict", predict_help, _predict, PredictArgs, Options, VadConfig)
    files_help = (
        "audio files (WAV, FLAC, OGG, MP3; any rate, any length); with --output-dir: a folder or manifest"
    )
    p.add_argument("files", nargs="+", help=files_help)
    export_help = "register a checkpoint in the BentoML model store, with its ONNX models (fp32, int8)"
    _command(sub, "export", export_help, _export, ExportArgs)
    _command(
        sub, "serve", "start the BentoML server: REST API, /stream and the demo at /ui", _serve, ServeArgs
    )
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
