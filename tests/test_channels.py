"""Channel names as written -> canonical channels (aliases, derivation, clear errors)."""

import numpy as np
import pytest

from plankton_stream.channels import DEFAULT_ALIASES, canonical_name, resolve_channels
from plankton_stream.errors import ChannelError

WANT = ("FWS", "SWS", "FL_YELLOW", "FL_ORANGE", "FL_RED")
DERIVE = {"FWS": ("FWS_L", "FWS_R")}


@pytest.mark.parametrize("written, canonical", [
    ("FWS", "FWS"), ("Sidewards Scatter", "SWS"), ("Fl Yellow", "FL_YELLOW"),
    ("FL Yellow", "FL_YELLOW"), ("fl  orange", "FL_ORANGE"), ("FL_Red", "FL_RED"),
    ("Forward Scatter Left", "FWS_L"), ("FWS R", "FWS_R"), ("Curvature", "CURVATURE"),
    ("FL Green", "FL_GREEN"), ("2 Fl Red", "FL_RED_2"), ("Trigger1", None),
])
def test_aliases(written, canonical):
    assert canonical_name(written, DEFAULT_ALIASES) == canonical


def test_selection_follows_the_wanted_order():
    written = ("FL Red", "FWS", "Sidewards Scatter", "Fl Orange", "Fl Yellow", "Curvature")
    pulses = np.arange(6)[:, None] * np.ones((6, 3))
    cmap = resolve_channels(written, WANT, DEFAULT_ALIASES, DERIVE)
    np.testing.assert_array_equal(cmap.select(pulses)[:, 0], [1, 2, 4, 3, 0])


def test_fws_is_derived_from_left_and_right_when_missing():
    written = ("FWS L", "FWS R", "SWS", "FL Yellow", "FL Orange", "FL Red")
    pulses = np.array([[2.0, 4], [4, 8], [1, 1], [1, 1], [1, 1], [1, 1]])
    out = resolve_channels(written, WANT, DEFAULT_ALIASES, DERIVE).select(pulses)
    np.testing.assert_array_equal(out[0], [3, 6])


def test_missing_channel_error_tells_what_to_do():
    with pytest.raises(ChannelError, match="FL_ORANGE.*ingest.channels.aliases.FL_ORANGE"):
        resolve_channels(("FWS", "SWS", "Fl Yellow", "FL Red"), WANT, DEFAULT_ALIASES, DERIVE)
