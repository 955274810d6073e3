"""The book: the published book builds with warnings as errors, and chapter 0 of a smoke run renders its figures
and tables in a real (headless Chromium) browser."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from robustlib import reproduce

pytestmark = pytest.mark.slow  # builds books / drives Chromium: `make test` runs it, `make test-fast` not

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)")
    return exe


def test_published_book_builds_without_warnings(tmp_path):
    html = reproduce.run_jupyter_book(ROOT, tmp_path, log=lambda s: None)
    for page in ("book/intro.html", "book/protocol.html", "book/chapters/00_adversarial_examples.html",
                 "book/appendix_schema.html", "book/bibliography.html"):
        assert (html / page).exists(), page


def _open(page_path: Path, screenshot: Path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        info = {
            "title": page.title(),
            "h1": page.inner_text("h1"),
            "images": page.eval_on_selector_all(
                "article img", "els => els.map(e => ({src: e.getAttribute('src'), ok: e.complete && e.naturalWidth > 0}))"),
            "tables": page.eval_on_selector_all("article table", "els => els.map(e => e.rows.length)"),
            "text": page.inner_text("article"),
        }
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return info


def test_chapter0_renders_figures_and_tables_in_chromium(smoke_run):
    html = smoke_run["dir"] / "book" / "_build" / "html"
    shot = smoke_run["dir"] / "chapter0.png"
    info = _open(html / "book" / "chapters" / "00_adversarial_examples.html", shot)
    assert "Adversarial examples" in info["h1"]
    figures = [i for i in info["images"] if i["src"].endswith(".png")]
    assert len(figures) >= 3, info["images"]          # examples, accuracy vs ε, cost
    assert all(i["ok"] for i in figures), [i for i in figures if not i["ok"]]
    assert len(info["tables"]) >= 4 and min(info["tables"]) >= 2  # configuration, history, ε sweep, headline, cost
    for expected in ("Robust accuracy against", "What robustness costs", "profile      smoke"):
        assert expected in info["text"]
    assert "Traceback" not in info["text"]
    assert shot.stat().st_size > 50_000


def test_published_intro_renders_in_chromium(tmp_path):
    html = reproduce.run_jupyter_book(ROOT, tmp_path, log=lambda s: None)
    info = _open(html / "book" / "intro.html", tmp_path / "intro.png")
    assert "Efficient adversarial robustness" in info["h1"]
    assert len(info["tables"]) >= 1 and "The cost unit N" in info["text"]
