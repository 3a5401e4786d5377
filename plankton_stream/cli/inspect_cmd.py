"""`plankton-stream inspect PATH [--json]`: what is in one export file or CytoClus set; for a
folder of several exports, which exports the watcher would find there."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plankton_stream.config import load_config
from plankton_stream.inspection import exports_in, is_folder, listing, summarise


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summarise a cyz2json file or a CytoClus set")
    p.add_argument("path", type=Path, help="a .json export, a CytoClus set's folder or any of its files, "
                   "or a folder of exports (they are listed)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--check-images", action="store_true",
                   help="also decode every image and locate its particle")
    p.add_argument("--config", help="config file (channel aliases, limits)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if is_folder(args.path) and len(exports_in(args.path)) > 1:
        return _list(listing(args.path), args.json)
    cfg = load_config(args.config)
    spec, listmode = _model_view(cfg)
    summary = summarise(args.path, cfg.ingest, args.check_images, spec, listmode)
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    print(_text(summary))
    return 0


def _list(found: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(found))
        return 0
    lines = [f"{found['path']}: {len(found['exports'])} exports (inspect one of them for its contents)"]
    for e in found["exports"]:
        state = "" if e["looks_complete"] else "   (not complete yet)"
        lines.append(f"  {e['kind']:<9} {Path(e['path']).name}   {len(e['files'])} file(s){state}")
    print("\n".join(lines))
    return 0


def _model_view(cfg):
    """The configured model's preprocessing and whether its gallery knows listmode; the
    defaults when they cannot be loaded (inspect must work without a model)."""
    from plankton_stream.errors import PlanktonStreamError
    from plankton_stream.pipeline.runner import load_model_and_gallery

    try:
        model, gallery = load_model_and_gallery(cfg)
    except (PlanktonStreamError, OSError):
        return None, True
    return model.preprocess, gallery.listmode is not None


def _text(s: dict) -> str:
    lines = [
        f"{s['path']}",
        f"  format        {s['format']}   sample {s['sample_id']}",
        f"  instrument    {s['instrument'] or '-'} {s['serial'] or ''}".rstrip(),
        f"  start         {s['start'] or '-'}   duration {s['duration_s'] or '-'} s",
        f"  particles     {s['particles']} read (instrument: {s['saved_reported']} saved, "
        f"{s['triggered']} triggered)",
        f"  images        {s['images']} (instrument: {s['imaged_reported']})",
        f"  channels      {', '.join(s['channels'])}" + ("" if s["pulses"] else "   (no pulses exported)"),
        f"  sets          {', '.join(s['sets']) or '-'}",
        "  classified by " + ", ".join(f"{m} {n}" for m, n in s["plan"].items() if n) +
        ("" if s["plan"]["none"] == 0 else "   (none = unclassified)"),
        f"  volume        analysed {s['analysed_volume_ul']} µL, pumped {s['pumped_volume_ul']} µL",
        f"  scale         {s['um_per_sample']} µm/sample, {s['um_per_px']} µm/px, "
        f"background frame: {'yes' if s['background_frame'] else 'no'}",
    ]
    if s["pulse_samples"]:
        ps = s["pulse_samples"]
        lines.append(f"  pulse length  {ps['min']}..{ps['max']} samples (median {ps['median']:g})")
    if s["channel_problem"]:
        lines.append(f"  channels!     {s['channel_problem']}")
    for w in s["warnings"]:
        lines.append(f"  warning       {w}")
    lines.append(f"  errors        {s['errors_total']}")
    for e in s["errors"][:20]:
        where = f"particle {e['particle']}" if e["particle"] is not None else f"row {e['row']}"
        lines.append(f"    {where}: {e['reason']}" + ("" if e["dropped"] else " (particle kept)"))
    if s["errors_total"] > 20:
        lines.append(f"    ... {s['errors_total'] - 20} more (use --json)")
    return "\n".join(lines)
