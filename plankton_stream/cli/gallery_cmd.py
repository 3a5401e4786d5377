"""`plankton-stream gallery build|add|remove|show|history|rollback`: the labelled gallery for k-NN.

Every change is saved as a new version (`<gallery>.history/<version>.npz`) and can be rolled
back; a running service swaps in the changed file between batches, without a restart.
`add --from-ecotaxa` takes the particles a taxonomist validated in EcoTaxa."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from plankton_stream import gallery as gal
from plankton_stream.artifacts import load_artifact
from plankton_stream.cli.common import add_data_args, cache_dir, labels_from
from plankton_stream.config import load_config
from plankton_stream.errors import ConfigError, GalleryError
from plankton_stream.labels import Labels


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
    for action in add._actions:  # --data is optional here: --from-ecotaxa names its files
        if action.dest == "data":
            action.required, action.default = False, []
    add.add_argument("--from-ecotaxa", type=Path, default=None, metavar="EXPORT.tsv",
                     help="EcoTaxa TSV (or zip): its validated particles become entries, re-embedded "
                          "from the export files it names (or found in --data)")
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
    history = verbs.add_parser("history", help="the kept versions of a gallery file")
    history.add_argument("gallery", type=Path)
    history.set_defaults(handler=run_history)
    rollback = verbs.add_parser("rollback", help="make a kept version the gallery again")
    rollback.add_argument("id", metavar="ID", help="a version (or a full gallery_id from the events)")
    rollback.add_argument("--gallery", type=Path, required=True, help="the gallery file")
    rollback.set_defaults(handler=run_rollback)


def _labelled(args: argparse.Namespace, per_class: int | None = None, seed: int = 0,
              labels: Labels | None = None, data_paths: list[Path] | None = None):
    """Embeddings of the labelled particles found in --data (or `data_paths`), with their
    labels and keys; through the one preprocessing path and the gallery's model."""
    from plankton_stream.backends import open_engine
    from plankton_stream.embedding import embed_set
    from plankton_stream.training.data import prepare_dirs

    cfg = load_config(args.config)
    model = load_artifact(args.model)
    labels = labels if labels is not None else labels_from(args)
    data = prepare_dirs(data_paths or args.data, model.preprocess, cfg.ingest, cache_dir(args))
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
    gal.save_versioned(g, args.out)
    print(_describe(g, args.out))
    return 0


def run_add(args: argparse.Namespace) -> int:
    g = gal.load(args.gallery)
    if args.from_ecotaxa is not None:
        labels, paths = _from_ecotaxa(args)
        model, _, names, keys, emb, extras = _labelled(args, labels=labels, data_paths=paths)
    elif not args.data:
        raise ConfigError("give --data FOLDER... (with --labels or the simulator's truth sidecars) "
                          "or --from-ecotaxa EXPORT.tsv")
    else:
        model, _, names, keys, emb, extras = _labelled(args)
    gal.check_model(g, model.model_id)
    known = {(tuple(k), g.classes[c]) for k, c in zip(g.keys, g.labels)}  # the same particle, same class
    fresh = [i for i, k in enumerate(keys) if (tuple(k), names[i]) not in known]
    if len(fresh) < len(keys):
        print(f"note: {len(keys) - len(fresh)} particles are in the gallery already: left as they are",
              file=sys.stderr)
    if not fresh:
        raise GalleryError("nothing to add: every labelled particle is in the gallery already")
    rows = np.asarray(fresh, dtype=np.int64)
    g = gal.add_entries(g, [names[i] for i in fresh], [keys[i] for i in fresh],
                        None if emb.profile is None else emb.profile[rows],
                        None if emb.image is None else emb.image[rows], emb.has_image[rows],
                        gal.Extras(None if extras.has_profile is None else extras.has_profile[rows],
                                   None if extras.listmode is None else extras.listmode[rows],
                                   extras.listmode_features))
    out = args.out or args.gallery
    gal.save_versioned(g, out)
    print(_describe(g, out))
    return 0


def _from_ecotaxa(args: argparse.Namespace) -> tuple[Labels, list[Path]]:
    """The validated particles of an EcoTaxa TSV and the export files to re-embed them from."""
    from plankton_stream.export.ecotaxa_read import read_validated

    v = read_validated(args.from_ecotaxa)
    if not v.labels:
        raise ConfigError(f"{args.from_ecotaxa}: none of its {v.rows} rows is validated "
                          f"(object_annotation_status = validated): nothing to learn")
    paths = [p for p in v.sources if p.exists()]
    gone = [p for p in v.sources if not p.exists()]
    if gone and not args.data:
        raise ConfigError(f"the export files of the validated particles are not where the TSV says "
                          f"({', '.join(map(str, gone[:3]))}): pass --data FOLDER where they are now")
    print(f"{args.from_ecotaxa}: {len(v.labels)} validated particles of {len(v.sources)} "
          f"export files; classes: {', '.join(sorted(set(v.labels.values())))}", file=sys.stderr)
    return v.labels, paths + list(args.data)


def run_remove(args: argparse.Namespace) -> int:
    g = gal.remove_class(gal.load(args.gallery), args.label)
    out = args.out or args.gallery
    gal.save_versioned(g, out)
    print(_describe(g, out))
    return 0


def run_history(args: argparse.Namespace) -> int:
    current = gal.version(gal.load(args.gallery))
    kept = gal.versions(args.gallery)
    if not kept:
        print(f"{args.gallery}: no versions kept yet (every `gallery` command keeps one from now on)")
    for v, at, g in kept:
        when = datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        mark = "*" if v == current else " "
        print(f"{mark} {v}  {when}  {len(g)} entries, {len(g.classes)} classes: {', '.join(g.classes)}")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    g = gal.rollback(args.gallery, args.id)
    print(f"{args.gallery} is version {gal.version(g)} again ({gal.gallery_id(g)}); a running service "
          f"swaps it in between batches")
    print(_describe(g, args.gallery))
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
