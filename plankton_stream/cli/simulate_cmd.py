"""`plankton-stream simulate`: write simulated CytoSense measurements to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from plankton_stream.formats.cytoclus_writer import ClusVariant
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
from plankton_stream.simulate.instruments import INSTRUMENTS, NAMINGS
from plankton_stream.simulate.run import FORMATS
from plankton_stream.simulate.species import COMMUNITIES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write simulated measurements (export files + truth sidecars)")
    p.add_argument("--out", required=True, type=Path, help="folder to write into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--particles", type=int, default=2000, help="saved particles per sample")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--format", choices=FORMATS, default="json",
                   help="cyz2json JSON, a CytoClus set, or a stand-in .cyz for the converter hook")
    p.add_argument("--interval", type=float, default=0.0, metavar="SECONDS",
                   help="time between measurements (0: write them all at once)")
    p.add_argument("--image-fraction", type=float, default=0.15,
                   help="mean fraction of particles with an image (1.0 for training data)")
    p.add_argument("--frames", choices=("full", "crop"), default=None,
                   help="images as whole camera frames or as crops (default: full for JSON)")
    p.add_argument("--frame-size", default="1920x1200", help="camera frame WxH")
    p.add_argument("--naming", choices=sorted(NAMINGS), default=None,
                   help="channel names as written (default: cs2020 for JSON, cefas for CytoClus)")
    p.add_argument("--instrument", type=instruments, default=("reference",), metavar="NAME[,NAME...]",
                   help="which simulated CytoSense writes the files; several (comma-separated) "
                        "write one subfolder each, same seed. Known: "
                        + "; ".join(f"{n}: {i.summary}" for n, i in INSTRUMENTS.items()).replace("%", "%%"))
    p.add_argument("--community", choices=sorted(COMMUNITIES), default="default",
                   help="which classes and how common: 'shapes' adds pairs that differ only in pulse "
                        "shape (chloroplast at a pole or central; one or two plastids)")
    p.add_argument("--write-mbps", type=float, default=None,
                   help="throttle writing to this rate (MB/s), like a slow SMB share")
    clus = p.add_argument_group("CytoClus layout (with --format cytoclus), as operators export it")
    clus.add_argument("--sets", default=None, metavar="NAMES",
                      help='comma-separated sets, e.g. "Default (all),All Imaged Particles"')
    clus.add_argument("--no-pulses", action="store_true", help="no _Pulses.csv (Listmode + crops only)")
    clus.add_argument("--no-info", action="store_true", help="no _Info.txt (no volume: per mL is nil)")
    clus.add_argument("--listmode-params", default=None, metavar="NAMES",
                      help='only these listmode parameters, e.g. "Total" (CytoClus 4 export choice)')
    clus.add_argument("--settings", action="store_true", help="write the CytoClus 4 Settings/ folder")
    clus.add_argument("--semicolon", action="store_true", help="European locale: ';' and decimal commas")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    width, _, height = args.frame_size.partition("x")
    clus = args.format == "cytoclus"
    settings = SimSettings(
        particles=args.particles,
        image_fraction=args.image_fraction,
        frames=args.frames or ("crop" if clus else "full"),
        frame_size=(int(width), int(height)),
        naming=args.naming or ("cefas" if clus else "cs2020"),
        instrument=args.instrument[0],
        weights=dict(COMMUNITIES[args.community]),
    )
    plan = RunPlan(out=args.out, seed=args.seed, samples=args.samples, fmt=args.format,
                   interval_s=args.interval, write_mb_per_s=args.write_mbps,
                   clus_variant=_clus_variant(args),
                   instruments=args.instrument if len(args.instrument) > 1 else ())
    simulate_to_disk(plan, settings, on_written=lambda path: print(path, flush=True))
    return 0


def instruments(text: str) -> tuple[str, ...]:
    """`--instrument` value: one or more registered instrument names, comma-separated."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in INSTRUMENTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown instrument {', '.join(unknown) or repr(text)}; known: {', '.join(INSTRUMENTS)}")
    return names


def _clus_variant(args: argparse.Namespace) -> ClusVariant:
    def names(text: str | None) -> tuple[str, ...]:
        return tuple(n.strip() for n in text.split(",") if n.strip()) if text else ()

    params = names(args.listmode_params)
    return ClusVariant(semicolon=args.semicolon, sets=names(args.sets), pulses=not args.no_pulses,
                       info=not args.no_info, listmode_params=params or None, settings=args.settings,
                       exif=args.settings)
