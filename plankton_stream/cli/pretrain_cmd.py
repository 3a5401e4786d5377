"""`plankton-stream pretrain`: contrastive pretraining on unlabelled export files."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from plankton_stream.cli.common import add_data_args, cache_dir, file_digests
from plankton_stream.config import load_config, replace_path
from plankton_stream.training.data import prepare_dirs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="train the image and profile encoders (no labels needed)")
    add_data_args(p)
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--loss", choices=("infonce", "sigmoid"))
    p.add_argument("--profile-encoder", choices=("cnn", "transformer", "lstm"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--max-minutes", type=float, help="stop and save after this long")
    p.add_argument("--gain-augment", type=float,
                   help="train with per-channel gains in [1/G, G] (robust to other instruments' PMT gains)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this model's weights (station adaptation: continue a shipped model "
                        "on a station's own unlabelled files, e.g. with --max-minutes 10); its "
                        "architecture and preprocessing are kept")
    p.add_argument("--baseline", type=Path, default=None,
                   help="also train the image-only SimCLR baseline (same data, same budget) here")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep OUT/checkpoint.pt (optimizer state) after a finished run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def _training_config(args: argparse.Namespace):
    cfg = load_config(args.config).training
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "seed": args.seed, "device": args.device, "max_minutes": args.max_minutes,
                 "gain_augment": args.gain_augment,
                 "model.loss": args.loss, "model.profile.kind": args.profile_encoder}
    for dotted, value in overrides.items():
        if value is not None:
            cfg = replace_path(cfg, dotted, value)
    return cfg


def run(args: argparse.Namespace) -> int:
    from plankton_stream.training.pretrain import adapting, pretrain

    root = load_config(args.config)
    cfg = _training_config(args)
    init = None
    if args.init is not None:
        from plankton_stream.artifacts import load_artifact

        init = load_artifact(args.init)
        cfg = adapting(cfg, init)
    data = prepare_dirs(args.data, cfg.preprocess, root.ingest, cache_dir(args)).with_profiles()
    for skipped in data.skipped:
        print(f"skipped: {skipped}", file=sys.stderr)
    pairs = int(data.has_image.sum())
    print(f"{len(data)} particles in {len(data.files)} files; {pairs} image-profile pairs", file=sys.stderr)
    provenance = {"command": "plankton-stream " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                  "data": file_digests(data.files), "particles": len(data)}
    art = pretrain(data, cfg, args.out, provenance, resume=args.resume, progress=not args.quiet, init=init)
    _finish(args.out, args.keep_checkpoint or art.manifest["training"]["stopped_early"])
    print(f"model {art.model_id} -> {args.out}")
    if args.baseline is not None:
        from plankton_stream.training.simclr import pretrain_image_ssl

        base = pretrain_image_ssl(data, cfg, args.baseline, provenance, resume=args.resume,
                                  progress=not args.quiet)
        _finish(args.baseline, args.keep_checkpoint or base.manifest["training"]["stopped_early"])
        print(f"baseline {base.model_id} -> {args.baseline}")
    return 0


def _finish(out: Path, keep: bool) -> None:
    """A finished run needs no optimizer state; a run stopped by --max-minutes keeps it."""
    from plankton_stream.training.loop import CHECKPOINT

    if not keep:
        (out / CHECKPOINT).unlink(missing_ok=True)

