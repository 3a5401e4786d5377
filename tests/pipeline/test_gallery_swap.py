"""Gallery hot swap: the classify stage takes a changed gallery file between batches.

Unit tests drive `GallerySwap` over real files with an injected clock; the round trip runs
the real service as a subprocess: export to EcoTaxa -> a taxonomist's validation (edited
TSV) -> `gallery add --from-ecotaxa` -> the running service names the new class."""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from plankton_stream import gallery as gal
from plankton_stream.cli import main
from plankton_stream.errors import GalleryError
from plankton_stream.pipeline.gallery_swap import GallerySwap
from plankton_stream.pipeline.runner import DEFAULT_GALLERY
from plankton_stream.simulate import SimSettings, read_truth
from tests.pipeline.service_helpers import (Listener, simulate, start_service, stop_service, wait_ready,
                                           write_config)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def base_gallery() -> gal.Gallery:
    return gal.remove_class(gal.load(DEFAULT_GALLERY), "dinophysis")


def swap_for(path: Path, g: gal.Gallery, clock: Clock, validate=lambda g: g) -> GallerySwap:
    gal.save(g, path)
    return GallerySwap(path, g, validate, settle_s=0.5, now=clock)


def test_a_changed_file_is_swapped_in_once_it_has_settled(tmp_path):
    clock, path = Clock(), tmp_path / "g.npz"
    g0 = base_gallery()
    s = swap_for(path, g0, clock)
    assert s.check() is None and s.gallery is g0  # nothing changed
    g1 = gal.remove_class(g0, "beads")
    gal.save(g1, path)
    assert s.check() is None and s.gallery is g0  # just changed: wait for it to settle
    clock.t = 0.6
    assert s.check() is None
    assert s.gallery_id == gal.gallery_id(g1) != gal.gallery_id(g0) and "beads" not in s.gallery.classes
    path.write_bytes(path.read_bytes())  # same bytes again (a rollback to it, a copy): no swap
    clock.t = 0.7
    s.check()
    clock.t = 1.5
    assert s.check() is None and s.swaps == 1


def test_a_bad_file_is_refused_and_the_old_gallery_kept(tmp_path):
    clock, path = Clock(), tmp_path / "g.npz"
    g0 = base_gallery()

    def validate(g: gal.Gallery) -> gal.Gallery:
        gal.check_model(g, g0.model_id)
        return g

    s = swap_for(path, g0, clock, validate)
    for bad in (b"PK\x03\x04 cut short", b"not a gallery at all"):
        path.write_bytes(bad)
        s.check()
        clock.t += 1.0
        event = s.check()
        assert event is not None and event.action == "refused" and event.file == str(path)
        assert "still using" in event.reason and s.gallery is g0
        assert s.check() is None  # refused once, not again every batch
    gal.save(gal.build("other-model", ["a", "b"], [("s", 0), ("s", 1)], None, None,
                       [False, False], extras=gal.Extras(listmode=g0.listmode[:2],
                                                         listmode_features=g0.listmode_features)), path)
    s.check()
    clock.t += 1.0
    event = s.check()
    assert event is not None and "other-model" in event.reason and s.gallery is g0
    with pytest.raises(GalleryError):
        validate(gal.load(path))


# --------------------------------------------------------------------------- the real service


def dino(hour: int) -> SimSettings:
    """A dinophysis-rich sample; each its own start time (so its own sample id)."""
    return dataclasses.replace(DINO, start=datetime(2026, 6, 1, hour))


DINO = SimSettings(particles=120, image_fraction=0.2, frame_size=(640, 480),
                   weights={"dinophysis": 3.0, "chlorella": 1.0, "detritus": 1.0})


def truth_of(folder: Path) -> dict:
    out: dict = {}
    for f in folder.rglob("*.truth.csv"):
        out.update(read_truth(f))
    return out


def validate_in_tsv(bundle: Path, truth: dict, species: str, new_class: str, out: Path, most: int = 30) -> int:
    """What a taxonomist does in EcoTaxa: name `most` particles of one species, status validated."""
    with zipfile.ZipFile(bundle) as z:
        name = next(n for n in z.namelist() if n.endswith(".tsv"))
        rows = list(csv.reader(io.StringIO(z.read(name).decode()), delimiter="\t"))
    head = rows[0]
    cat, status = head.index("object_annotation_category"), head.index("object_annotation_status")
    sample, pid = head.index("sample_id"), head.index("object_particle_id")
    named: set = set()
    for r in rows[2:]:
        key = (r[sample], int(r[pid]))
        if truth[key] == species and (key in named or len(named) < most):
            r[cat], r[status] = new_class, "validated"
            named.add(key)
    with open(out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    return len(named)


@pytest.mark.slow
def test_round_trip_new_class_without_a_restart(tmp_path):
    gallery = tmp_path / "gallery.npz"
    gal.save_versioned(base_gallery(), gallery)  # the station's gallery does not know dinophysis
    first = gal.load(gallery)
    config, cfg = write_config(tmp_path)
    cfg["model"] = {"gallery": str(gallery)}
    config.write_text(yaml.safe_dump(cfg))
    simulate(tmp_path / "field", seed=31, settings=dino(1))
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        simulate(tmp_path / "incoming", seed=32, settings=dino(2))
        assert listener.wait(lambda l: len(l.of("sample")) == 1), stop_service(proc)[1][-3000:]
        before = listener.of("particle")
        assert {p["gallery_id"] for p in before} == {gal.gallery_id(first)}
        assert "new_taxon" not in {p["label"] for p in before}
        seen = truth_of(tmp_path / "incoming")
        new_species = [p for p in before if seen[(p["sample_id"], p["particle_id"])] == "dinophysis"]
        assert sum(p["label"] == "unknown" for p in new_species) / len(new_species) > 0.8  # open set
        # a corrupt gallery file is refused; the service goes on with the old one
        gallery.write_bytes(b"this is not a gallery")
        assert listener.wait(lambda l: any(e["action"] == "refused" for e in l.of("error")), 30), \
            stop_service(proc)[1][-3000:]
        assert main(["gallery", "rollback", gal.version(first), "--gallery", str(gallery)]) == 0

        # export -> validate in the TSV -> gallery add, while the service runs
        bundle = tmp_path / "ecotaxa.zip"
        assert main(["export", "ecotaxa", str(tmp_path / "field"), "--out", str(bundle),
                     "--config", str(config)]) == 0
        n = validate_in_tsv(bundle, truth_of(tmp_path / "field"), "dinophysis", "new_taxon",
                            tmp_path / "validated.tsv")
        assert n >= 20
        assert main(["gallery", "add", str(gallery), "--from-ecotaxa", str(tmp_path / "validated.tsv"),
                     "--config", str(config), "--no-cache"]) == 0
        new_id = gal.gallery_id(gal.load(gallery))
        # new samples until one is classified with the new gallery (the swap follows the file)
        for seed in range(33, 36):
            simulate(tmp_path / "incoming" / str(seed), seed=seed, settings=dino(seed - 30))
            want = len(listener.of("sample")) + 1
            assert listener.wait(lambda l, n=want: len(l.of("sample")) == n), stop_service(proc)[1][-3000:]
            if listener.of("sample")[-1]["gallery_id"] == new_id:
                break
        after = [b for t, b in listener.messages if t == "particle"]
        swapped = next(i for i, p in enumerate(after) if p["gallery_id"] == new_id)
        assert all(p["gallery_id"] == new_id for p in after[swapped:])  # every event after the swap
        truth = truth_of(tmp_path / "incoming")
        last = listener.of("sample")[-1]["sample_id"]
        dinos = [p for p in after if p["sample_id"] == last and truth[(last, p["particle_id"])] == "dinophysis"]
        others = [p for p in after if p["sample_id"] == last and truth[(last, p["particle_id"])] != "dinophysis"]
        assert len(dinos) > 30
        assert sum(p["label"] == "new_taxon" for p in dinos) / len(dinos) > 0.8
        assert sum(p["label"] == "new_taxon" for p in others) / len(others) < 0.1
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-3000:]
    assert "refused" in out and "gallery swapped without a restart" in out
