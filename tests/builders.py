"""Small, explicit test data: samples, particles and images built in code."""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
from PIL import Image

from plankton_stream.particles import ImageRef, Particle, Sample

CHANNELS = ("FWS", "SWS", "Fl Yellow", "FL Orange", "FL Red")


def jpeg(width: int = 80, height: int = 80, seed: int = 0, dark_disc: bool = True) -> bytes:
    """A grey JPEG crop; with a dark disc in the middle like a small cell."""
    rng = np.random.default_rng(seed)
    a = np.full((height, width), 180.0) + rng.normal(0, 2, (height, width))
    if dark_disc:
        y, x = np.mgrid[0:height, 0:width]
        a[(x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 5) ** 2] = 90
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def sample(sample_id: str = "Test 2025-05-04 07h54", channels: tuple[str, ...] = CHANNELS,
           **kw) -> Sample:
    base = dict(sample_id=sample_id, path="", format="", channels=channels,
                instrument_name="TestBuoy", instrument_serial="CS-TEST-1",
                start=datetime(2025, 5, 4, 7, 54, 12), duration_s=600.0, pumped_volume_ul=1200.0,
                analysed_volume_ul=1150.5, triggered=4000, saved=None, imaged=None,
                um_per_sample=0.55, um_per_px=0.3, background=None,
                extra={"sampleCoreSpeed": 2.2, "laserBeamWidth": 5})
    base.update(kw)
    return Sample(**base)


def particles(s: Sample, n: int = 6, image_every: int = 3, seed: int = 1,
              first_id: int = 0) -> list[Particle]:
    """Particles with distinct lengths, float32 pulses, listmode, and an image every k-th."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = 8 + 5 * i
        pulses = np.round(rng.uniform(0, 900, (len(s.channels), length)), 2).astype(np.float32)
        listmode = {f"{c}.total": float(np.float32(pulses[k].sum())) for k, c in enumerate(s.channels)}
        listmode.update({f"{c}.maximum": float(pulses[k].max()) for k, c in enumerate(s.channels)})
        image = None
        if image_every and i % image_every == 0:
            image = ImageRef(jpeg(seed=i), (10 * i, 20, 80, 80), s.um_per_px, False)
        out.append(Particle(s.sample_id, first_id + 7 * i, s.channels, pulses, listmode, image))
    return out
