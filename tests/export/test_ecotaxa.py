"""`export ecotaxa`: a bundle EcoTaxa's importer accepts, with the service's labels, and
the validated labels read back for the gallery."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter

import pytest

from plankton_stream.cli import main
from plankton_stream.errors import ConfigError
from plankton_stream.export.ecotaxa import MAX_OBJECT_NUMBERS, _columns
from plankton_stream.export.ecotaxa_read import read_validated
from plankton_stream.simulate import read_truth
from tests.export.ecotaxa_validator import validate_bundle


def truth(folder) -> dict:
    return {k: v for f in folder.glob("*.truth.csv") for k, v in read_truth(f).items()}


def test_the_bundle_passes_ecotaxas_import_checks(bundle, field_sample):
    report = validate_bundle(bundle)
    assert report.problems == []
    (table,) = report.tables
    assert table.name.endswith(".tsv") and "/ecotaxa_" in table.name
    assert all(c.split("_", 1)[0] in ("img", "object", "sample", "acq", "process") for c in table.columns)
    assert table.types["object_id"] == "[t]" and table.types["img_rank"] == "[f]"
    objects = {r["object_id"]: r for r in table.rows}
    known = truth(field_sample)
    assert len(objects) == len(known) == 120  # every particle (all have pulses)
    # the crop (rank 0) when imaged, the pulse plot (rank 1) always; never one image twice
    ranks = Counter((r["object_id"], r["img_rank"]) for r in table.rows)
    assert set(ranks.values()) == {1}
    assert all((o, "1") in ranks for o in objects)
    assert 15 < sum((o, "0") in ranks for o in objects) < 60
    r = next(iter(objects.values()))
    assert r["object_date"] == "20260601" and r["object_time"] == "080000"  # the measurement start, UTC
    assert (r["object_lat"], r["object_lon"]) == ("52.1", "4.25")
    assert sum(c.startswith("object_lm_") for c in table.columns) > 20  # listmode as numbers
    assert float(r["object_lm_fws_total"]) > 0
    # labels are the service's: predicted, and right often enough to be worth validating
    named = [r for r in objects.values() if r["object_annotation_category"]]
    assert {r["object_annotation_status"] for r in named} == {"predicted"}
    right = sum(r["object_annotation_category"] == known[(r["sample_id"], int(r["object_particle_id"]))]
                for r in named)
    assert right / len(named) > 0.7 and len(named) > 80
    assert {r["process_gallery_id"] for r in objects.values()} != {""}


def test_the_validator_catches_what_ecotaxa_refuses(bundle, tmp_path):
    """The checks above can fail: a bundle broken the ways EcoTaxa refuses is reported."""
    with zipfile.ZipFile(bundle) as z:
        files = {n: z.read(n) for n in z.namelist()}
    name = next(n for n in files if n.endswith(".tsv"))
    rows = list(csv.reader(io.StringIO(files[name].decode()), delimiter="\t"))
    h = rows[0]
    rows[2][h.index("object_date")] = "2026-06-01"
    rows[3][h.index("object_annotation_status")] = "maybe"
    rows[4][h.index("img_file_name")] = "images/nowhere.png"
    rows.append(rows[5])
    rows[6][h.index("object_lat")] = "123"
    rows[0] = h + [f"object_extra{i}" for i in range(MAX_OBJECT_NUMBERS)]
    rows[1] = rows[1] + ["[f]"] * MAX_OBJECT_NUMBERS
    out = io.StringIO()
    csv.writer(out, delimiter="\t", lineterminator="\n").writerows(rows)
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as z:
        for n, data in files.items():
            z.writestr(n, out.getvalue() if n == name else data)
    problems = "\n".join(validate_bundle(broken).problems)
    for expected in ("not YYYYMMDD", "annotation status 'maybe'", "missing image", "duplicate object",
                     "object_lat 123 out of range", "numeric object fields"):
        assert expected in problems


def test_listmode_wider_than_ecotaxa_keeps_is_cut():
    names = {f"p{i}": f"object_lm_p{i}" for i in range(700)}
    columns, dropped = _columns(names)
    numbers = [c for c, t in columns.items() if c.startswith("object_") and t == "f"]
    assert len(numbers) == MAX_OBJECT_NUMBERS and dropped == 700 - (MAX_OBJECT_NUMBERS - 4)


def test_validated_labels_come_back(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as z:
        name = next(n for n in z.namelist() if n.endswith(".tsv"))
        rows = list(csv.reader(io.StringIO(z.read(name).decode()), delimiter="\t"))
    h = rows[0]
    cat, status = h.index("object_annotation_category"), h.index("object_annotation_status")
    for r in rows[2:12]:
        r[cat], r[status] = "mystery_flagellate", "validated"
    # as EcoTaxa exports it: no type row, names in another case
    edited = tmp_path / "export.tsv"
    with open(edited, "w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows([[c.upper() for c in h]] + rows[2:])
    v = read_validated(edited)
    assert set(v.labels.values()) == {"mystery_flagellate"} and v.rows == len(rows) - 2
    pid = h.index("object_particle_id")
    assert set(v.labels) == {(r[h.index("sample_id")], int(r[pid])) for r in rows[2:12]}
    assert [str(p) for p in v.sources] == [rows[2][h.index("sample_source_file")]]
    rows[12][cat], rows[12][status] = "", "validated"
    with open(edited, "w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    with pytest.raises(ConfigError, match="validated without a category"):
        read_validated(edited)
    (tmp_path / "bare.tsv").write_text("object_id\tobject_annotation_status\nx\tvalidated\n")
    with pytest.raises(ConfigError, match="needs the columns sample_id, object_particle_id"):
        read_validated(tmp_path / "bare.tsv")


def test_gallery_add_refuses_a_tsv_with_nothing_validated(bundle, tmp_path, capsys):
    from plankton_stream import gallery as gal
    from plankton_stream.pipeline.runner import DEFAULT_GALLERY

    gallery = tmp_path / "g.npz"
    assert main(["gallery", "add", str(gallery), "--from-ecotaxa", str(bundle)]) == 2
    assert "no such gallery" in capsys.readouterr().err
    gal.save(gal.load(DEFAULT_GALLERY), gallery)
    assert main(["gallery", "add", str(gallery), "--from-ecotaxa", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"none of its \d+ rows is validated", err)  # every row of the bundle is predicted
