"""The Gradio demo in headless Chromium: generate in every tab, see the outputs, see errors as messages.
Screenshots go to test-artifacts/."""
import os
import shutil
import socket
import types

import pytest

from demos.app import launch
from tiny import perturbed, random_heads, tiny_model, tiny_tokenizer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    tok = tiny_tokenizer(vocab=300)
    target = tiny_model("llama", vocab=len(tok), context=256, layers=3)
    for name, model in {"target": target, "pard": perturbed(target, 0.3, pard_token=tok.mask_token_id)}.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    random_heads(target, "medusa").save(str(root / "medusa"))
    port = free_port()
    args = types.SimpleNamespace(host="127.0.0.1", port=port, text_model=str(root / "target"),
                                 text_draft=str(root / "pard"), text_heads=[str(root / "medusa")])
    app = launch(args, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def page(url):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian chromium is missing: bash scripts/setup.sh installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        yield page
        browser.close()


def test_text_tab_shows_both_outputs_and_the_speedup(page):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.fill("#text-prompt textarea", "def fib(n):")
    page.click("#text-generate")
    page.wait_for_function("document.querySelector('#text-stats').innerText.includes('speedup')", timeout=60_000)
    spec = page.input_value("#text-spec textarea")
    ar = page.input_value("#text-ar textarea")
    assert spec and spec == ar  # greedy: identical text, different time
    stats = page.inner_text("#text-stats")
    assert "tokens/s" in stats and "mean accepted" in stats
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-text.png"), full_page=True)


def test_text_tab_reports_bad_input_in_the_page(page):
    page.fill("#text-prompt textarea", "")
    page.click("#text-generate")
    page.wait_for_function("document.querySelector('#text-stats').innerText.includes('prompt is empty')",
                           timeout=30_000)
    assert "Traceback" not in page.content()
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-text-error.png"), full_page=True)
