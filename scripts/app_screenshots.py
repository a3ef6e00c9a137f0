"""Screenshots of `slmcnn app` for docs/ and the README: the start page, a build, a layer being labelled.

.venv/bin/python scripts/app_screenshots.py [--work DIR]

Makes a 12-layer synthetic build, monitors it with the shipped model (skipped when WORK holds one
already), serves the app on a free port and photographs it in headless Chromium: the build (grade
strip, recurring regions, alerts reviewed, tiles proposed to label), a layer with its grade and
defects, the start page (builds at a glance, photo folders to pick), the camera page's good-layer picker.
"""

import argparse
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from slmcnn import cli
from slmcnn.app.server import create_app
from slmcnn.app.workspace import AppConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/slmcnn-app-shots")
    args = parser.parse_args()
    work = Path(args.work)
    db = work / "build.sqlite"
    if not db.is_file():
        cli.main(["synth", str(work / "build"), "--layers", "12", "--seed", "3", "--force", "--no-patches"])
        monitor = ["monitor", str(work / "build" / "layers"), "--db", str(db), "--exit-when-idle", "1"]
        cli.main([*monitor, "--settle", "0.1"])
    for old in work.glob("labels*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = AppConfig([db], [work / "build"], labels=work / "labels.sqlite", token="t", user="ana")
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/sets/b0-1")
        page.wait_for_selector('body[data-ready="1"]')
        page.locator("#alerts button.confirm").first.click()
        page.locator("#alerts tbody tr", has_text="open").first.locator("button.false-alarm").click()
        page.wait_for_selector("#alerts .verdict-false_alarm")
        page.fill("#propose-count", "8")
        page.click("#propose")
        page.wait_for_selector("#proposals tbody tr")
        page.screenshot(path=str(DOCS / "app-build.png"), full_page=True)
        page.goto(f"{url}/sets/b0-1/layers/5")
        page.wait_for_selector('body[data-ready="5"]')
        for key in ["Enter"] * 8 + ["3", "2"] + ["Enter"] * 4:
            page.keyboard.press(key)
        page.keyboard.press("e")
        page.wait_for_selector("#ig:not([hidden])", timeout=120_000)
        b = page.locator("#overlay").bounding_box()
        page.mouse.move(b["x"] + b["width"] * 0.55, b["y"] + b["height"] * 0.45)
        page.evaluate("window.slmcnnFlush()")
        page.screenshot(path=str(DOCS / "app-layer.png"))
        page.goto(url)
        page.wait_for_selector('body[data-ready="1"]')
        page.screenshot(path=str(DOCS / "app-index.png"), full_page=True)
        page.locator('#folders tr[data-folder="layers"] button.open').click()
        page.wait_for_url("**/sets/f*")
        page.goto(page.url + "/camera")
        page.wait_for_selector('#camera[data-ready="1"]')
        page.locator("#good img").last.scroll_into_view_if_needed()  # the thumbnails load as they come into view
        page.locator("#good input").nth(1).check()
        page.locator("#good input").nth(2).check()
        page.wait_for_function("[...document.querySelectorAll('#good img')].every((i) => i.complete)")
        page.screenshot(path=str(DOCS / "app-camera.png"), full_page=True)
        browser.close()
    server.should_exit = True
    print(f"wrote {', '.join(f'docs/app-{n}.png' for n in ('index', 'build', 'layer', 'camera'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
