"""The page in a real headless browser: Debian's chromium driven by Playwright (no browser download).

Skips, saying why, when /usr/bin/chromium or the playwright package is absent (CI installs chromium in .ci/run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from serve_helpers import EXAMPLES, InvertRestorer, decode, fake_loader, running_server

CHROMIUM = os.environ.get("PREFRESTORE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None,
                                reason=f"{CHROMIUM} not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory, one_thread, detector):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from prefrestore.serving.app import create_app
    from prefrestore.serving.schemas import ServerSettings

    workdir = tmp_path_factory.mktemp("serve-browser")
    app = create_app(ServerSettings(workdir=workdir), fake_loader(InvertRestorer(delay=0.3), detector, workdir))
    with running_server(app) as url:
        yield url


def test_page_upload_progress_slider_download(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (its browser is not needed)")
    photo = EXAMPLES / "group.jpg"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1100, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server + "/")
            page.wait_for_selector("#options input[name=upscale]")
            # the control options of prefrestore.options have controls too, with the CLI's defaults and help
            controls = page.evaluate("""() => Object.fromEntries([...document.querySelector('#options').elements]
                .map(e => [e.name, [e.tagName, e.value, e.parentElement.title]]))""")
            assert {k: v[:2] for k, v in controls.items() if k in ("candidates", "identity_guard", "color_fix",
                                                                   "blend", "fidelity")} == {
                "fidelity": ["INPUT", ""], "candidates": ["INPUT", "1"], "identity_guard": ["SELECT", "fallback"],
                "color_fix": ["SELECT", "lowfreq"], "blend": ["INPUT", "1"]}
            assert "1 = closest to the input" in controls["fidelity"][2]
            page.fill("#options input[name=upscale]", "1.5")
            page.fill("#options input[name=blend]", "0.5")
            page.evaluate("""() => { window.seen = []; new MutationObserver(() => document.querySelectorAll('.status')
                .forEach(s => window.seen.push(s.textContent))).observe(document.querySelector('#results'),
                {subtree: true, childList: true, characterData: true}); }""")
            page.set_input_files("#files", [str(photo), str(EXAMPLES / "LICENSES.md")])
            # progress is shown while it runs: the status leaves "uploading" and the bar moves before "restored"
            card = page.locator(".card.restored", has_text="group.jpg")
            card.wait_for(timeout=60_000)
            seen = page.evaluate("window.seen")
            assert any(t.startswith(("restored 0 of 3", "restoring 3 faces", "finding faces")) for t in seen), seen
            bad = page.locator(".card", has_text="LICENSES.md")
            bad.locator(".error").wait_for(timeout=30_000)
            assert "not an image" in bad.locator(".error").inner_text()
            assert card.locator("progress").evaluate("p => p.value") == 1
            # the slider moves the clip of the "before" image
            slider = card.locator(".compare.whole input[type=range]")
            slider.fill("20")
            clip = card.locator(".compare.whole img.before").evaluate("i => i.style.clipPath")
            assert clip == "inset(0px 80% 0px 0px)" or clip == "inset(0 80% 0 0)", clip
            assert card.locator(".face").count() == 3
            assert card.locator(".face input[type=range]").count() == 3
            with page.expect_download() as info:
                card.locator("a.download").click()
            download = info.value
            assert download.suggested_filename == "group_restored.jpg"
            out = tmp_path / download.suggested_filename
            download.save_as(out)
            restored = decode(out.read_bytes())
            assert restored.shape == (600, 960, 3)  # 640x400 at 1.5x
            if os.environ.get("PREFRESTORE_SCREENSHOT"):
                page.screenshot(path=os.environ["PREFRESTORE_SCREENSHOT"], full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert np.isfinite(restored).all()
