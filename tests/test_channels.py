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


def test_listmode_keys_resolve_as_canonical_names_do_and_stay_bounded():
    from plankton_stream.channels import listmode_key

    ALIASES = DEFAULT_ALIASES

    for key in ("Fl Red.total", "FWS.maximum", "Forward Scatter Left.length", "Curv.total", "nonsense.total",
                "no parameter", ".total"):
        written, _, param = key.rpartition(".")
        canonical = canonical_name(written, ALIASES) if written else None
        expected = (canonical, param) if canonical else None
        assert listmode_key(key, ALIASES) == expected == listmode_key(key, ALIASES)  # memoised: same answer
    other = {"FL_RED": ("Rouge",)}  # another table is another memo
    assert listmode_key("Rouge.total", other) == ("FL_RED", "total") and listmode_key("Rouge.total", ALIASES) is None
    for i in range(10_000):  # a hostile file's endless new keys: the memo is cleared, answers stay right
        assert listmode_key(f"junk{i}.total", ALIASES) is None
    assert listmode_key("Fl Red.total", ALIASES) == ("FL_RED", "total")
