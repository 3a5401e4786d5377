"""`plankton-stream export ecotaxa|dwca SAMPLES... --out FILE.zip`: classified exports for
EcoTaxa (human validation) and Darwin Core Archives (OBIS / GBIF)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from plankton_stream.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export classified samples for EcoTaxa or as a Darwin Core Archive")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    eco = kinds.add_parser("ecotaxa", help="EcoTaxa import zip: images, pulse plots, predicted labels")
    _common(eco)
    eco.add_argument("--imaged-only", action="store_true",
                     help="only particles with an image (default: also those with pulses only)")
    eco.set_defaults(handler=run_ecotaxa)
    dwca = kinds.add_parser("dwca", help="Darwin Core Archive: events, occurrences, abundances (eMoF)")
    _common(dwca)
    dwca.add_argument("--validated", type=Path, nargs="*", default=[],
                      help="EcoTaxa TSVs (or zips) whose validated labels replace the predictions")
    dwca.add_argument("--title", default=None, help="dataset title (default: the station's name)")
    dwca.set_defaults(handler=run_dwca)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("samples", type=Path, nargs="+", metavar="SAMPLES",
                   help="export files or folders of them")
    p.add_argument("--out", type=Path, required=True, help="the zip to write")
    p.add_argument("--config", default=None, help="the service's config (model, gallery, classify, station)")
    p.add_argument("--latitude", type=float, default=None, help="where the samples were taken (decimal degrees)")
    p.add_argument("--longitude", type=float, default=None)


def _setup(args: argparse.Namespace):
    from plankton_stream.config import load_config
    from plankton_stream.export.ecotaxa import Where
    from plankton_stream.formats import find_exports

    logging.basicConfig(level="WARNING", format="%(levelname)s %(message)s")
    cfg = load_config(args.config)
    if (args.latitude is None) != (args.longitude is None):
        raise ConfigError("give both --latitude and --longitude, or neither")
    if args.latitude is not None and not (-90 <= args.latitude <= 90 and -180 <= args.longitude <= 180):
        raise ConfigError(f"--latitude must be in [-90, 90] and --longitude in [-180, 180]; "
                          f"got {args.latitude}, {args.longitude}")
    paths: list[Path] = []
    for s in args.samples:
        if not s.exists():
            raise ConfigError(f"{s}: no such export file or folder")
        paths += find_exports(s, recursive=True) if s.is_dir() else [s]
    if not paths:
        raise ConfigError(f"no export files in {', '.join(map(str, args.samples))}")
    return cfg, Where(cfg.station.name, args.latitude, args.longitude), paths


def run_ecotaxa(args: argparse.Namespace) -> int:
    from plankton_stream.export.classified import open_classifier
    from plankton_stream.export.ecotaxa import write_bundle

    cfg, where, paths = _setup(args)
    with open_classifier(cfg) as clf:
        s = write_bundle(paths, args.out, clf, where, args.imaged_only)
    print(f"{args.out}: {len(s.samples)} samples, {s.objects} particles, {s.images} images")
    for line in s.notes + [f"skipped {f}" for f in s.skipped_files]:
        print(f"  {line}", file=sys.stderr)
    return 0


def run_dwca(args: argparse.Namespace) -> int:
    from plankton_stream.errors import PlanktonStreamError
    from plankton_stream.export.classified import open_classifier
    from plankton_stream.export.dwca import tables, write_archive
    from plankton_stream.export.ecotaxa_read import read_validated

    cfg, where, paths = _setup(args)
    validated: dict = {}
    for tsv in args.validated:
        validated.update(read_validated(tsv).labels)
    done, skipped = [], []
    with open_classifier(cfg) as clf:
        for path in paths:
            try:
                done.append(clf.file(path))
            except PlanktonStreamError as exc:
                skipped.append(f"{path}: {exc}")
    t = tables(done, validated, where)
    write_archive(t, args.out, args.title or f"plankton-stream {cfg.station.name}")
    print(f"{args.out}: {len(t.event)} events, {len(t.occurrence)} occurrences, {len(t.emof)} measurements")
    for line in skipped:
        print(f"  skipped {line}", file=sys.stderr)
    return 0
