"""The instrument simulator: physically motivated particles -> real-format export files.

Shipped in the package because the demo, the end-to-end tests and the default model's
training data all come from it. Every run is reproducible from its seed, on any of several
instruments (`instruments.py`: gains, lasers, beam, core speed, camera, channels, drift).
"""

from plankton_stream.simulate.instrument import SimSettings, Truth, simulate_sample
from plankton_stream.simulate.instruments import INSTRUMENTS, InstrumentProfile, get_instrument
from plankton_stream.simulate.run import RunPlan, read_truth, simulate_to_disk
from plankton_stream.simulate.species import CLASS_NAMES, SPECIES

__all__ = ["CLASS_NAMES", "INSTRUMENTS", "SPECIES", "InstrumentProfile", "RunPlan", "SimSettings",
           "Truth", "get_instrument", "read_truth", "simulate_sample", "simulate_to_disk"]
