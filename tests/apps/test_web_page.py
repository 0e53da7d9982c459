"""The web chat page (``GET /``, rag/static/chat.html) driven in a real headless Chromium against a live server:
the answer streams in, claims get verdict marks, citations open the passage they point to (text, table rows),
off-topic questions abstain, a 401 asks for the token, errors are shown, and document markup stays text."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rag.errors import GenerationError
from rag.testing.live import live_server
from rag.types import Doc
from tests.support import DATA
from tests.support.fakes import Scripted, Slow

pytestmark = pytest.mark.slow
pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'pilotfish[server]'")
pytest.importorskip("uvicorn", reason="the server needs uvicorn: pip install 'pilotfish[server]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install playwright")
expect = sync_api.expect
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):  # .ci/run installs it: a missing browser there is a failure
    pytest.fail("no chromium on PATH in CI; .ci/run installs it (apt-get install chromium)", pytrace=False)
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install chromium) for the browser test", allow_module_level=True)

from rag.apps.server.app import create_app  # noqa: E402  (after the skips: it needs fastapi)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
KEYS_Q = "How often must API keys be rotated?"
KEYS_A = "API keys must be rotated every 90 days [1]. The moon is made of green cheese [1]."
OFF_TOPIC_Q = "What is the airspeed velocity of an unladen swallow?"
PLANTED = 'Visitor badges are handed out at reception <img src=x onerror="window.__pwned=1;alert(1)"> daily.'


class Broken(Slow):
    """Writes two words, then the LLM connection breaks."""

    def stream(self, prompt: Any, max_new_tokens: int | None = None) -> Iterator[str]:
        yield from list(super().stream(prompt, max_new_tokens))[:2]
        raise GenerationError("the LLM server closed the stream")


@dataclass
class Chat:
    page: Any
    llm: Scripted
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def send(self, question: str) -> Any:
        """Type ``question``, press Enter; the new answer bubble."""
        n = self.page.locator(".answer").count()
        self.page.fill("#question", question)
        self.page.press("#question", "Enter")
        bubble = self.page.locator(".answer").nth(n)
        bubble.wait_for()
        return bubble

    def answer(self, question: str) -> Any:
        """Ask and wait for the final answer (the bubble is no longer streaming)."""
        bubble = self.send(question)
        expect(bubble).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=15_000)
        return bubble


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """tests/data/docs (tables included) plus a document carrying HTML, BM25 only."""
    from rag.connectors.files import load_path
    from rag.indexers.collection import Collection
    from rag.indexers.tables import add_tables

    kb = Collection.create(tmp_path_factory.mktemp("web") / "kb", encoder=None)
    report = load_path(DATA / "docs")
    kb.add(report.docs)
    add_tables(kb, report.tables, root=DATA / "docs")
    kb.add([Doc(PLANTED, id="badges", meta={"title": "<b>Badges</b><script>window.__pwned=2</script>"})])
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def open_chat(browser: Any, kb: Any) -> Any:
    @contextlib.contextmanager
    def serve(llm: Scripted, collections: Any = None, **options: Any) -> Iterator[Chat]:
        app = create_app(collections or {"kb": kb}, llm=llm, mode="bm25", **options)
        with live_server(app) as url:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            chat = Chat(page, llm)
            page.on("dialog", lambda d: (chat.dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: chat.errors.append(str(e)))
            page.goto(url)
            try:
                yield chat
                assert not chat.errors, chat.errors  # no uncaught script error on the page
            finally:
                page.close()

    return serve


def test_streams_marks_claims_opens_citations_and_abstains(open_chat: Any, kb: Any) -> None:
    with open_chat(Slow(KEYS_A)) as chat:
        page = chat.page
        expect(page.locator("#doc-count")).to_have_text(f"kb: {len(kb)} documents")
        expect(page.locator("#picker")).to_be_hidden()  # one collection: no picker

        bubble = chat.send(KEYS_Q)
        partial = page.wait_for_function(
            """() => { const t = document.querySelector('.answer.streaming .answer-text');
                       return t && t.textContent.length > 0 && t.textContent; }"""
        ).json_value()
        assert KEYS_A.startswith(partial) and len(partial) < len(KEYS_A), partial  # the answer grew in place
        expect(bubble).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=15_000)

        expect(bubble.locator(".answer-text")).to_contain_text("API keys must be rotated every 90 days")
        good = bubble.locator('.claim[data-verdict="supported"]')
        bad = bubble.locator('.claim[data-verdict="unsupported"]')
        expect(good).to_have_count(1)
        expect(bad).to_have_count(1)
        expect(good.locator(".mark")).to_have_text("✓")
        expect(good).to_contain_text("rotated every 90 days")
        expect(good.locator(".support")).to_have_text(re.compile(r"^supported · support \d{1,3}%$"))
        expect(bad.locator(".mark")).to_have_text("✗")
        expect(bad).to_contain_text("green cheese")
        expect(bubble.locator(".claims-title")).to_have_text("Claims · 1 of 2 supported")

        # a claim's citation opens the passage it cites; clicking again closes it
        cite = good.locator('.citation[data-hit-id="security.md"]')
        passage = bubble.locator(".passage")
        expect(passage).to_be_hidden()
        cite.click()
        expect(passage).to_be_visible()
        expect(cite).to_have_attribute("aria-expanded", "true")
        expect(passage).to_contain_text("Old keys stop working after 24 hours")  # not in the answer
        expect(passage).to_contain_text("Security handbook")
        expect(passage.locator(".passage-id")).to_have_text("security.md")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "chat_page.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        cite.click()
        expect(passage).to_be_hidden()
        expect(cite).to_have_attribute("aria-expanded", "false")
        # the [1] markers of the answer text are citations too
        inline = bubble.locator(".answer-text .citation")
        expect(inline).to_have_count(2)
        inline.first.click()
        expect(passage).to_contain_text("API keys must be rotated every 90 days")

        # off-topic: the pipeline abstains without calling the LLM, and the page says so instead of claims
        off = chat.answer(OFF_TOPIC_Q)
        expect(off.locator(".abstained")).to_contain_text("Abstained")
        expect(off.locator(".abstained")).to_contain_text("no passage was retrieved")
        expect(off.locator(".claim")).to_have_count(0)
        assert len(chat.llm.prompts) == 1
        expect(page.locator(".answer")).to_have_count(2)
        expect(page.locator(".error")).to_have_count(0)


def test_thumbs_on_a_cited_passage_and_on_the_answer_are_stored_as_feedback(open_chat: Any, kb: Any) -> None:
    from rag.models import feedback

    before = len(feedback.read(kb.model_root))
    with open_chat(Scripted(KEYS_A), token="s3cret") as chat:
        page = chat.page
        page.evaluate("sessionStorage.setItem('pilotfish-token', 's3cret')")
        bubble = chat.answer(KEYS_Q)
        bubble.locator('.sources .citation[data-hit-id="security.md"]').click()
        row = bubble.locator(".passage .feedback")
        expect(row).to_contain_text("Was this passage useful?")
        row.locator('.thumb[data-useful="true"]').click()
        expect(row.locator(".feedback-note")).to_have_text("Thanks, noted.")
        expect(row.locator('.thumb[data-useful="true"]')).to_have_attribute("aria-pressed", "true")
        whole = bubble.locator(":scope > .feedback")
        expect(whole).to_contain_text("Was this answer useful?")
        whole.locator('.thumb[data-useful="false"]').click()
        expect(whole.locator(".feedback-note")).to_have_text("Thanks, noted.")
    stored = feedback.read(kb.model_root)[before:]
    assert [(e["question"], e["doc_id"], e["useful"]) for e in stored] == [
        (KEYS_Q, "security.md", True),
        (KEYS_Q, None, False),
    ]
    assert stored[0]["answer_id"] == stored[1]["answer_id"] and len(stored[0]["answer_id"]) == 32


def test_token_prompt_on_401_then_the_answer_arrives(open_chat: Any) -> None:
    with open_chat(Slow(KEYS_A), token="s3cret") as chat:
        page = chat.page
        bubble = chat.send(KEYS_Q)
        expect(page.locator("#auth")).to_be_visible()
        expect(page.locator("#auth-message")).to_contain_text("needs an access token")
        expect(bubble.locator(".status")).to_contain_text("Waiting for an access token")
        page.fill("#token", "wrong")
        page.press("#token", "Enter")
        expect(page.locator("#auth-message")).to_contain_text("refused: a wrong bearer token")
        expect(page.locator("#auth")).to_be_visible()
        page.fill("#token", "s3cret")
        page.click("#token-save")
        expect(bubble).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=15_000)
        expect(page.locator("#auth")).to_be_hidden()
        expect(bubble.locator(".claim")).to_have_count(2)
        assert page.evaluate("sessionStorage.getItem('pilotfish-token')") == "s3cret"
        assert len(chat.llm.prompts) == 1  # the refused requests never reached the LLM
        # the next question reuses the stored token without asking
        chat.answer(KEYS_Q)
        expect(page.locator("#auth")).to_be_hidden()
        expect(page.locator(".claim")).to_have_count(4)
        expect(page.locator(".error")).to_have_count(0)


def test_document_and_answer_markup_is_shown_as_text(open_chat: Any) -> None:
    answer = "Visitors get a badge <img src=x onerror=alert(2)> at reception [1]."
    with open_chat(Slow(answer)) as chat:
        page = chat.page
        bubble = chat.answer("What do visitors get at reception?")
        expect(bubble.locator(".answer-text")).to_contain_text("a badge <img src=x onerror=alert(2)> at")
        bubble.locator('.answer-text .citation[data-hit-id="badges"]').click()
        passage = bubble.locator(".passage")
        expect(passage).to_contain_text('<img src=x onerror="window.__pwned=1;alert(1)">')
        expect(passage).to_contain_text("<b>Badges</b><script>")
        page.wait_for_timeout(200)  # time for a planted onerror to fire, were the markup parsed
        assert page.locator("#log img, #log script, #log b").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert chat.dialogs == []


def test_table_row_citation_shows_the_row(open_chat: Any) -> None:
    with open_chat(Slow("The Lisbon office is at Rua Augusta 20 [2].")) as chat:
        bubble = chat.answer("What is the address of the Lisbon office?")
        expect(bubble.locator('.claim[data-verdict="supported"]')).to_have_count(1)
        bubble.locator('.answer-text .citation[data-hit-id="offices.csv#row2"]').click()
        table = bubble.locator(".passage table")
        expect(table.locator("th")).to_have_text(["city", "address", "opened"])
        expect(table.locator("td")).to_have_text(["Lisbon", "Rua Augusta 20", "2019"])
        expect(table.locator("caption")).to_contain_text("offices (offices.csv), row 2")
        expect(bubble.locator(".passage-head")).to_contain_text("table offices, row 2")


def test_collection_picker_and_errors(open_chat: Any, kb: Any, tmp_path: Path) -> None:
    from rag.indexers.collection import Collection

    notes = Collection.create(tmp_path / "notes", encoder=None)
    notes.add([Doc("The office garden is watered every Friday morning.", id="garden")])
    llm = Slow("The garden is watered every Friday [1].")
    with open_chat(llm, collections={"kb": kb, "notes": notes}, max_body=300) as chat:
        page = chat.page
        expect(page.locator("#picker")).to_be_visible()
        expect(page.locator("#collection option")).to_have_text(["kb", "notes"])
        expect(page.locator("#doc-count")).to_have_text(f"{len(kb)} documents")
        page.select_option("#collection", "notes")
        expect(page.locator("#doc-count")).to_have_text("1 document")
        bubble = chat.answer("When is the garden watered?")
        expect(bubble.locator('.claim[data-verdict="supported"] .citation[data-hit-id="garden"]')).to_be_visible()

        # a non-2xx answer shows the server's message
        too_long = chat.answer("Why " + "really " * 60 + "?")
        expect(too_long.locator(".error")).to_contain_text("over the limit of 300 bytes")
    notes.close()

    with open_chat(Broken(KEYS_A)) as chat:  # an error event in the middle of the stream
        bubble = chat.answer(KEYS_Q)
        expect(bubble.locator(".error")).to_have_text("the LLM server closed the stream")
        expect(bubble.locator(".answer-text")).to_have_text("API keys")  # what had streamed stays
