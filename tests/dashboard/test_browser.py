"""The dashboard end to end, in a real headless browser: the real service (a subprocess) fed
by the simulator, the real `plankton-stream dashboard` (a subprocess), Chromium driven by
Playwright. The plot, the crops and an alert banner must appear on the page by themselves
(Server-Sent Events, no reload).

Needs Debian's `chromium` (/usr/bin/chromium) and `playwright` from PyPI; skipped, saying
so, where either is missing. Set PLANKTON_STREAM_SCREENSHOT=PATH to keep a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from plankton_stream.simulate.species import CLASS_NAMES
from tests.pipeline.service_helpers import (
    Listener,
    simulate,
    start_service,
    stop_service,
    wait_ready,
    write_config,
)

CHROMIUM = os.environ.get("PLANKTON_STREAM_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser "
                               "test drives Debian's chromium with it)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium", allow_module_level=True)


def deliver(export: Path, folder: Path) -> None:
    """An export (and its sidecars) into the watched folder, as the instrument's copy would."""
    for f in export.parent.glob(export.stem + "*"):
        shutil.move(str(f), folder / f.name)


def start_dashboard(config: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "plankton_stream", "dashboard", "--config", str(config),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()  # "dashboard: http://127.0.0.1:PORT/" once it listens
    assert line.startswith("dashboard: http://"), line + proc.stdout.read()[-2000:]
    return proc, line.split(" ", 1)[1].strip()


def test_plot_crops_and_alert_banner_appear_live(tmp_path):
    config, cfg = write_config(tmp_path)
    # every class that reaches 2 particles in a sample fires (clear at 1): some surely will
    cfg["alerts"] = {"rules": [{"label": c, "metric": "count", "above": 2, "clear": 1} for c in CLASS_NAMES]}
    cfg["dashboard"] = {"thumbs_per_class": 4}
    config.write_text(yaml.safe_dump(cfg))
    listener = Listener(cfg["publish"]["endpoint"])
    service = start_service(config)
    dashboard = None
    try:
        assert wait_ready(listener), stop_service(service)[1][-3000:]
        first, second = simulate(tmp_path / "staged", seed=41, samples=2)
        deliver(first, tmp_path / "incoming")  # history: published before the dashboard starts
        assert listener.wait(lambda l: len(l.of("sample")) == 1), stop_service(service)[1][-3000:]
        dashboard, url = start_dashboard(config)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(url)
            # from the replayed history: the sample's classes are plotted, its alerts shown
            page.wait_for_selector("#plot svg path.series", state="attached", timeout=15000)
            page.wait_for_selector("#alerts .banner", timeout=15000)
            # live: a second sample arrives while the page is open, no reload
            deliver(second, tmp_path / "incoming")
            assert listener.wait(lambda l: len(l.of("sample")) == 2), stop_service(service)[1][-3000:]
            page.wait_for_function("document.querySelectorAll('#plot svg circle').length >= 2 * "
                                   "document.querySelectorAll('#plot svg path.series').length", timeout=15000)
            # the crops the service kept, served by the dashboard and decoded by the browser
            page.wait_for_function("[...document.querySelectorAll('#thumbs img')].some("
                                   "i => i.complete && i.naturalWidth > 0)", timeout=20000)
            page.wait_for_function("document.querySelector('#health').textContent.includes('running')",
                                   timeout=10000)
            fired = {a["label"] for a in listener.of("alert") if a["state"] == "fired"}
            banners = set(page.eval_on_selector_all("#alerts .banner[data-label]", "els => els.map(e => e.dataset.label)"))
            assert fired and banners <= fired and banners, (fired, banners)
            plotted = set(page.eval_on_selector_all("#plot svg path.series", "els => els.map(e => e.dataset.label)"))
            sample_classes = set().union(*(s["counts"] for s in listener.of("sample")))
            assert plotted and plotted <= sample_classes
            thumb_rows = set(page.eval_on_selector_all("#thumbs .row", "els => els.map(e => e.dataset.label)"))
            assert thumb_rows and thumb_rows <= sample_classes
            if os.environ.get("PLANKTON_STREAM_SCREENSHOT"):
                page.screenshot(path=os.environ["PLANKTON_STREAM_SCREENSHOT"], full_page=True)
            browser.close()
    finally:
        listener.close()
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(timeout=10)
        code, out = stop_service(service)
    assert code == 0, out[-3000:]
