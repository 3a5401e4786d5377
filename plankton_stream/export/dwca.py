"""Darwin Core Archives of abundances (OBIS, GBIF): an Event core, an Occurrence extension
and OBIS's extended MeasurementOrFact (eMoF).

One event per sample (when, where if the station knows, how much water was analysed); one
occurrence per class found in it (`scientificName` is the class label, `basisOfRecord`
MachineObservation, `identificationVerificationStatus` predicted - or validated when a
person validated every particle it counts, in EcoTaxa); in the eMoF, per occurrence its
abundance per litre and per event the volume analysed, each named by its NERC vocabulary
term. `unknown` and `unclassified` particles are no taxon: they are left out of the
occurrences and counted in the event's remarks.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from plankton_stream import __version__
from plankton_stream.errors import PlanktonStreamError
from plankton_stream.export.classified import Classified
from plankton_stream.export.ecotaxa import Where
from plankton_stream.gallery import UNCLASSIFIED, UNKNOWN
from plankton_stream.labels import Labels

DWC = "http://rs.tdwg.org/dwc/terms/"
OBIS = "http://rs.iobis.org/obis/terms/"
NERC = "http://vocab.nerc.ac.uk/collection/"
# P01 SDBIOL01: "Abundance of biological entity specified elsewhere per unit volume of the
# water body" (SDBIOL05 is a biomass per area of the bed); P06 UCPL: number per litre
ABUNDANCE = ("Abundance of biological entity specified elsewhere per unit volume of the water body",
             NERC + "P01/current/SDBIOL01/", "Number per litre", NERC + "P06/current/UCPL/")
VOLUME = ("Volume sampled of the water body", NERC + "P01/current/VOLWBSMP/", "Millilitres",
          NERC + "P06/current/VVML/")

EVENT = ("eventID", "eventDate", "decimalLatitude", "decimalLongitude", "geodeticDatum",
         "sampleSizeValue", "sampleSizeUnit", "samplingProtocol", "locality", "eventRemarks")
OCCURRENCE = ("eventID", "occurrenceID", "basisOfRecord", "scientificName", "occurrenceStatus",
              "organismQuantity", "organismQuantityType", "identificationVerificationStatus",
              "identificationRemarks")
EMOF = ("eventID", "occurrenceID", "measurementID", "measurementType", "measurementTypeID",
        "measurementValue", "measurementUnit", "measurementUnitID")
_OBIS_TERMS = {"measurementTypeID", "measurementUnitID"}


@dataclass
class Tables:
    event: list[dict] = field(default_factory=list)
    occurrence: list[dict] = field(default_factory=list)
    emof: list[dict] = field(default_factory=list)


def tables(samples: list[Classified], validated: Labels, where: Where) -> Tables:
    """The three tables for classified samples; `validated` (from EcoTaxa) overrides labels."""
    t = Tables()
    for c in samples:
        b = c.begin
        counts, checked = Counter(), Counter()
        for pid, lab in c.labels.items():
            label = validated.get((b.sample_id, pid), lab.label)
            counts[label] += 1
            checked[label] += (b.sample_id, pid) in validated
        litres = b.analysed_volume_ul / 1e6 if b.analysed_volume_ul else None
        t.event.append(_event(c, where, counts))
        if litres is not None:
            t.emof.append(_fact(b.sample_id, "", "volume", VOLUME, round(b.analysed_volume_ul / 1000, 6)))
        for label, n in sorted(counts.items()):
            if label in (UNKNOWN, UNCLASSIFIED):
                continue
            occ = f"{b.sample_id}:{label}"
            status = "validated" if checked[label] == n else "predicted"
            t.occurrence.append({
                "eventID": b.sample_id, "occurrenceID": occ, "basisOfRecord": "MachineObservation",
                "scientificName": label, "occurrenceStatus": "present", "organismQuantity": n,
                "organismQuantityType": "individuals", "identificationVerificationStatus": status,
                "identificationRemarks": f"{checked[label]} of {n} particles validated by a person; "
                                         f"the others classified by {c.gallery_id}"})
            if litres is not None:
                t.emof.append(_fact(b.sample_id, occ, "abundance", ABUNDANCE, round(n / litres, 3)))
    return t


def _event(c: Classified, where: Where, counts: Counter) -> dict:
    b = c.begin
    date = ""
    if b.start:
        start = datetime.fromisoformat(b.start)
        start = start.astimezone(timezone.utc) if start.tzinfo else start.replace(tzinfo=timezone.utc)
        date = start.isoformat(timespec="seconds").replace("+00:00", "Z")
        if b.duration_s:
            end = start + timedelta(seconds=b.duration_s)
            date += "/" + end.isoformat(timespec="seconds").replace("+00:00", "Z")
    volume = round(b.analysed_volume_ul / 1000, 6) if b.analysed_volume_ul else None
    return {"eventID": b.sample_id, "eventDate": date, "decimalLatitude": where.latitude,
            "decimalLongitude": where.longitude,
            "geodeticDatum": "EPSG:4326" if where.latitude is not None else None,
            "sampleSizeValue": volume, "sampleSizeUnit": "millilitre" if volume else None,
            "samplingProtocol": f"CytoSense imaging flow cytometer; particles classified by "
                                f"plankton-stream {__version__} (model {c.model_id}, gallery {c.gallery_id})",
            "locality": where.station or None,
            "eventRemarks": f"{sum(counts.values())} particles classified: {counts.get(UNKNOWN, 0)} unknown "
                            f"(no gallery class close enough), {counts.get(UNCLASSIFIED, 0)} unclassified; "
                            f"{c.skipped} unreadable" + ("" if volume else "; no analysed volume stated, "
                                                         "so no abundances")}


def _fact(event: str, occ: str, what: str, term: tuple[str, str, str, str], value: float) -> dict:
    return {"eventID": event, "occurrenceID": occ or None, "measurementID": f"{occ or event}:{what}",
            "measurementType": term[0], "measurementTypeID": term[1], "measurementValue": value,
            "measurementUnit": term[2], "measurementUnitID": term[3]}


def write_archive(t: Tables, out: Path, title: str) -> None:
    """meta.xml, eml.xml and the three tables in one zip (written atomically)."""
    if not t.event:
        raise PlanktonStreamError("nothing to write: no sample could be classified")
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("event.txt", _txt(EVENT, t.event))
        z.writestr("occurrence.txt", _txt(OCCURRENCE, t.occurrence))
        z.writestr("extendedmeasurementorfact.txt", _txt(EMOF, t.emof))
        z.writestr("meta.xml", _meta())
        z.writestr("eml.xml", _eml(title, t))
    tmp.replace(out)


def _txt(columns: tuple[str, ...], rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.writer(out, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else str(r[c]).replace("\t", " ").replace("\n", " ")
                    for c in columns])
    return out.getvalue()


def _term(name: str) -> str:
    return (OBIS if name in _OBIS_TERMS else DWC) + name


def _file(tag: str, row_type: str, name: str, columns: tuple[str, ...]) -> str:
    key = "id" if tag == "core" else "coreid"
    fields = "\n".join(f'    <field index="{i}" term="{_term(c)}"/>' for i, c in enumerate(columns))
    return (f'  <{tag} encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" '
            f'fieldsEnclosedBy="" ignoreHeaderLines="1" rowType="{row_type}">\n'
            f"    <files><location>{name}</location></files>\n    <{key} index=\"0\"/>\n{fields}\n  </{tag}>")


def _meta() -> str:
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml">',
        _file("core", DWC + "Event", "event.txt", EVENT),
        _file("extension", DWC + "Occurrence", "occurrence.txt", OCCURRENCE),
        _file("extension", OBIS + "ExtendedMeasurementOrFact", "extendedmeasurementorfact.txt", EMOF),
        "</archive>", ""])


def _eml(title: str, t: Tables) -> str:
    dates = sorted(e["eventDate"].split("/")[0] for e in t.event if e["eventDate"])
    period = f"{dates[0]} to {dates[-1]}" if dates else "dates not stated by the exports"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1" packageId={quoteattr(title)} system="plankton-stream">
  <dataset>
    <title>{escape(title)}</title>
    <creator><organizationName>{escape(title)}</organizationName></creator>
    <abstract><para>Phytoplankton abundances from a CytoSense imaging flow cytometer, {len(t.event)} samples
({escape(period)}), {len(t.occurrence)} occurrences. Particles were classified by plankton-stream
{escape(__version__)} (k nearest neighbours in a labelled gallery); identificationVerificationStatus says
whether a person validated them.</para></abstract>
    <intellectualRights><para>Set the licence before publishing.</para></intellectualRights>
  </dataset>
</eml:eml>
"""
