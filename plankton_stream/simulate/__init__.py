"""The instrument simulator: physically motivated particles -> real-format export files.

Shipped in the package because the demo, the end-to-end tests and the default model's
training data all come from it. Every run is reproducible from its seed.
"""

from plankton_stream.simulate.instrument import SimSettings, Truth, simulate_sample
from plankton_stream.simulate.run import RunPlan, read_truth, simulate_to_disk
from plankton_stream.simulate.species import CLASS_NAMES, SPECIES

__all__ = ["CLASS_NAMES", "SPECIES", "RunPlan", "SimSettings", "Truth", "read_truth",
           "simulate_sample", "simulate_to_disk"]
