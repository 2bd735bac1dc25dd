"""Screenshot of the `prefrestore serve` page restoring the bundled group photo with a model (docs/serve.md).

    python tools/serve_screenshot.py [--model default] [-o docs/serve/screenshot.png]

Starts the app in this process on a free loopback port, opens the page in Debian's headless chromium through
Playwright (executable_path, nothing downloaded), uploads ``assets/examples/group.jpg`` and a text file (to show
the error line), waits for the restoration and writes a full-page PNG.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import uvicorn
from playwright.sync_api import sync_playwright

from prefrestore.serving.app import create_app
from prefrestore.serving.runner import load_runner
from prefrestore.serving.schemas import ServerSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "prefrestore" / "assets" / "examples"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "serve" / "screenshot.png"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        app = create_app(ServerSettings(workdir=work), lambda: load_runner(args.model, work))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not (server.started and server.servers):
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        while requests.get(url + "/readyz", timeout=30).status_code != 200:
            time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url + "/")
            page.wait_for_selector("#options input[name=upscale]")
            bad = work / "notes.txt"
            bad.write_text("not a photo")
            page.set_input_files("#files", [str(bad), str(EXAMPLES / "group.jpg")])
            page.locator(".card.restored").wait_for(timeout=300_000)
            page.locator(".card.failed").wait_for(timeout=60_000)
            page.locator(".face img.after").last.wait_for()
            page.wait_for_timeout(500)
            page.screenshot(path=args.output, full_page=True)
            browser.close()
        server.should_exit = True
        thread.join(timeout=30)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
