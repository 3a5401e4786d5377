"""`export dwca`: a Darwin Core Archive that a reader library from the package registries
(python-dwca-reader) reads back: Event core, Occurrence and eMoF extensions, NERC terms."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter

import pytest

from plankton_stream.cli import main

dwca_read = pytest.importorskip("dwca.read", reason="pip install python-dwca-reader (the dev extra)")

DWC = "http://rs.tdwg.org/dwc/terms/"
OBIS = "http://rs.iobis.org/obis/terms/"


def test_archive_reads_back_with_abundances_per_litre(bundle, field_sample, tmp_path):
    # a taxonomist validated every particle the service called chlorella, in EcoTaxa
    with zipfile.ZipFile(bundle) as z:
        name = next(n for n in z.namelist() if n.endswith(".tsv"))
        rows = list(csv.reader(io.StringIO(z.read(name).decode()), delimiter="\t"))
    h = rows[0]
    cat, status = h.index("object_annotation_category"), h.index("object_annotation_status")
    for r in rows[2:]:
        if r[cat] == "chlorella":
            r[status] = "validated"
    objects = {r[h.index("object_id")]: r[cat] or "unknown" for r in rows[2:]}
    tsv = tmp_path / "validated.tsv"
    with open(tsv, "w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    out = tmp_path / "dwca.zip"
    assert main(["export", "dwca", str(field_sample), "--out", str(out), "--validated", str(tsv),
                 "--latitude", "52.1", "--longitude", "4.25", "--title", "Test station"]) == 0

    with dwca_read.DwCAReader(str(out)) as archive:
        assert archive.descriptor.core.type == DWC + "Event"
        assert {e.type for e in archive.descriptor.extensions} == {DWC + "Occurrence",
                                                                   OBIS + "ExtendedMeasurementOrFact"}
        assert "Test station" in archive.metadata.find("dataset/title").text
        (event,) = archive.rows
        d = event.data
        volume_ml = float(d[DWC + "sampleSizeValue"])
        assert d[DWC + "sampleSizeUnit"] == "millilitre" and volume_ml > 0
        assert d[DWC + "eventDate"].startswith("2026-06-01T08:00:00Z/")
        assert (d[DWC + "decimalLatitude"], d[DWC + "decimalLongitude"]) == ("52.1", "4.25")
        occ = [x.data for x in event.extensions if x.rowtype == DWC + "Occurrence"]
        emof = [x.data for x in event.extensions if x.rowtype == OBIS + "ExtendedMeasurementOrFact"]

    counts = Counter(v for v in objects.values() if v not in ("unknown", "unclassified"))
    assert {o[DWC + "scientificName"]: int(o[DWC + "organismQuantity"]) for o in occ} == dict(counts)
    assert {o[DWC + "basisOfRecord"] for o in occ} == {"MachineObservation"}
    status = {o[DWC + "scientificName"]: o[DWC + "identificationVerificationStatus"] for o in occ}
    assert status.pop("chlorella") == "validated" and set(status.values()) == {"predicted"}
    abundance = {m[DWC + "occurrenceID"]: m for m in emof
                 if m[OBIS + "measurementTypeID"].endswith("/P01/current/SDBIOL01/")}
    assert len(abundance) == len(occ)
    for o in occ:
        m = abundance[o[DWC + "occurrenceID"]]
        per_litre = int(o[DWC + "organismQuantity"]) / (volume_ml / 1000)
        assert float(m[DWC + "measurementValue"]) == pytest.approx(per_litre, rel=1e-3)
        assert m[OBIS + "measurementUnitID"].endswith("/P06/current/UCPL/")
    (vol,) = [m for m in emof if m[OBIS + "measurementTypeID"].endswith("/P01/current/VOLWBSMP/")]
    assert float(vol[DWC + "measurementValue"]) == volume_ml and vol[OBIS + "measurementUnitID"].endswith("/VVML/")
