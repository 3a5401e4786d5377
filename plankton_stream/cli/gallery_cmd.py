"""`plankton-stream gallery build|add|remove|show`: the labelled gallery for k-NN."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from plankton_stream import gallery as gal
from plankton_stream.artifacts import load_artifact
from plankton_stream.cli.common import add_data_args, cache_dir, labels_from
from plankton_stream.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="build or edit the labelled gallery")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    build = verbs.add_parser("build", help="embed labelled particles into a new gallery")
    add_data_args(build, labels=True)
    build.add_argument("--out", type=Path, required=True, help="gallery file (.npz)")
    build.add_argument("--model", type=Path, default=None, help="model directory (default: shipped)")
    build.add_argument("--per-class", type=int, default=None, help="at most N entries per class")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(handler=run_build)
    add = verbs.add_parser("add", help="add labelled particles (new classes or more examples)")
    add.add_argument("gallery", type=Path)
    add_data_args(add, labels=True)
    add.add_argument("--model", type=Path, default=None)
    add.add_argument("--out", type=Path, default=None, help="default: overwrite GALLERY")
    add.set_defaults(handler=run_add)
    remove = verbs.add_parser("remove", help="remove a class (no retraining)")
    remove.add_argument("gallery", type=Path)
    remove.add_argument("label")
    remove.add_argument("--out", type=Path, default=None)
    remove.set_defaults(handler=run_remove)
    show = verbs.add_parser("show", help="classes, sizes and thresholds of a gallery")
    show.add_argument("gallery", type=Path)
    show.set_defaults(handler=run_show)


def _labelled(args: argparse.Namespace, per_class: int | None = None, seed: int = 0):
    """Embeddings of the labelled particles found in --data, with their labels and keys."""
    from plankton_stream.backends import open_engine
    from plankton_stream.embedding import embed_set
    from plankton_stream.training.data import prepare_dirs

    cfg = load_config(args.config)
    model = load_artifact(args.model)
    labels = labels_from(args)
    data = prepare_dirs(args.data, model.preprocess, cfg.ingest, cache_dir(args))
    rows = np.asarray([i for i, k in enumerate(data.keys) if k in labels], dtype=np.int64)
    missing = len(labels) - len(rows)
    if missing > 0:
        print(f"note: {missing} labelled particles were not found in the data", file=sys.stderr)
    if per_class:
        rng = np.random.default_rng(seed)
        by_class: dict[str, list[int]] = {}
        for i in rows.tolist():
            by_class.setdefault(labels[data.keys[i]], []).append(i)
        rows = np.sort(np.concatenate([rng.permutation(v)[:per_class] for v in by_class.values()]))
    sub = data.subset(rows)
    with open_engine(model) as engine:
        emb = embed_set(engine, sub)
    extras = gal.Extras(emb.has_profile, sub.listmode, model.preprocess.listmode_features)
    return model, cfg, [labels[k] for k in sub.keys], sub.keys, emb, extras


def run_build(args: argparse.Namespace) -> int:
    model, cfg, names, keys, emb, extras = _labelled(args, args.per_class, args.seed)
    c = cfg.classify
    g = gal.build(model.model_id, names, keys, emb.profile, emb.image, emb.has_image, c.k, c.fusion,
                  c.open_set_quantile, {"data": [str(d) for d in args.data]}, extras)
    gal.save(g, args.out)
    print(_describe(g, args.out))
    return 0


def run_add(args: argparse.Namespace) -> int:
    g = gal.load(args.gallery)
    model, _, names, keys, emb, extras = _labelled(args)
    gal.check_model(g, model.model_id)
    g = gal.add_entries(g, names, keys, emb.profile, emb.image, emb.has_image, extras)
    out = args.out or args.gallery
    gal.save(g, out)
    print(_describe(g, out))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    g = gal.remove_class(gal.load(args.gallery), args.label)
    out = args.out or args.gallery
    gal.save(g, out)
    print(_describe(g, out))
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(_describe(gal.load(args.gallery), args.gallery))
    return 0


def _describe(g: gal.Gallery, path: Path) -> str:
    lines = [f"{path}: {len(g)} entries, {len(g.classes)} classes, model {g.model_id}, "
             f"k={g.k}, fusion {g.fusion}" + (f" -> {g.fusion_rule}" if g.fusion == "auto" else "")]
    lines += [f"  {name:24s} {n}" for name, n in g.counts().items()]
    lines.append("  open-set thresholds: " + ", ".join(f"{m} {t:.3f}" for m, t in g.thresholds.items()))
    lines.append(f"  fusion weight of images (leave-one-out on the gallery): {g.alpha:.1f}")
    if g.fusion_loo:
        lines.append("  fusion rules, leave-one-out accuracy on the gallery: "
                     + ", ".join(f"{r} {a:.3f}" for r, a in g.fusion_loo.items()))
    lines.append(f"  listmode features: {', '.join(g.listmode_features)}" if g.listmode is not None
                 else "  listmode features: none (exports without pulses or images cannot be "
                      "classified; rebuild the gallery)")
    return "\n".join(lines)
