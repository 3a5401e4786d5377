"""Raw `.cyz` files through an external converter (e.g. Cyz2Json, which needs .NET).

`ingest.converter.command` is a template such as `Cyz2Json {input} --raw --output {output}`.
The template - never a file name - is split like a shell command line, then {input} and
{output} are replaced in each argument in one pass (`argv`), so a file name is one argv
element exactly as it is on disk: no shell runs, a name holding `{output}`, quotes, `;` or
`$(...)` is not re-read, and an absolute path keeps a name starting with `-` from looking
like an option. The converted JSON is then read by the cyz2json reader. Failures name the
command, its exit status and the end of its error output.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from plankton_stream.config import ConverterConfig, IngestConfig
from plankton_stream.errors import ConverterError, FormatError
from plankton_stream.formats import cyz2json
from plankton_stream.formats.common import Export
from plankton_stream.particles import Item, Reading

NAME = KIND = "cyz"  # KIND: `Export.kind` of this format's exports
_PLACEHOLDER = re.compile(r"\{(input|output)\}")


def sniff(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".cyz"


def exports(folder: Path, names: list[str]) -> list[Export]:
    """Every `.cyz` among a folder's entries (complete or not)."""
    paths = [folder / n for n in names if n.lower().endswith(".cyz")]
    return [Export(KIND, p, (p,)) for p in paths if p.is_file()]


def recognise(export: Export) -> bool | None:
    return True  # the name decides: the converter is the judge of the content


def looks_whole(export: Export) -> bool:
    return True  # an opaque binary: only its stability on disk tells


def convert(path: Path, cfg: ConverterConfig, out_dir: Path) -> Path:
    """Run the converter on `path`; returns the JSON it wrote into `out_dir`."""
    if not cfg.command.strip():
        raise ConverterError(f"{path}: a raw .cyz file needs a converter: set ingest.converter.command "
                             f"(e.g. 'Cyz2Json {{input}} --raw --output {{output}}') or export JSON "
                             f"or CytoClus files on the instrument PC")
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / (path.stem + ".json")
    args = argv(cfg.command, path.absolute(), output.absolute())
    if shutil.which(args[0]) is None and not Path(args[0]).exists():
        raise ConverterError(f"converter {args[0]!r} not found (ingest.converter.command); "
                             f"install it or fix the path")
    try:
        done = subprocess.run(args, shell=False, check=False, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=cfg.timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ConverterError(f"{path}: converter timed out after {cfg.timeout_s:g} s") from exc
    if done.returncode != 0 or not output.exists():
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-3:]
        raise ConverterError(f"{path}: converter exited with {done.returncode}"
                             f"{' and wrote no output' if not output.exists() else ''}: "
                             f"{' / '.join(tail) or 'no message'}")
    return output


def argv(template: str, source: Path, output: Path) -> list[str]:
    """The converter's argv: the template split, each placeholder replaced once. `re.sub`
    never scans the text it inserted, so a file name is never read as a template."""
    values = {"input": str(source), "output": str(output)}
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], token) for token in shlex.split(template)]


def read(path: Path, cfg: IngestConfig) -> Reading:
    """Convert into a temporary folder and read the JSON (removed when reading ends)."""
    tmp = Path(tempfile.mkdtemp(prefix="plankton-cyz-"))
    try:
        json_path = convert(path, cfg.converter, tmp)
        inner = cyz2json.read(json_path, cfg)
    except (ConverterError, FormatError):
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Reading(inner.sample, _cleanup_after(inner.items, tmp))


def _cleanup_after(items: Iterator[Item], tmp: Path) -> Iterator[Item]:
    try:
        yield from items
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
