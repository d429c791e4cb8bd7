"""The live chat in headless Chromium against daphne (``ChannelsLiveServerTestCase``).

daphne runs in a forked child serving HTTP and websockets with the real ASGI app and the
offline demo model; the browser streams a reply, forks from a turn (Edit), regenerates, and
a second tab on the review page sees the new turn arrive. Screenshots: /tmp/shots/chat_*.png.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from agents import set_tracing_disabled
from asgiref.sync import SyncToAsync
from channels.testing import ChannelsLiveServerTestCase
from django.contrib.auth.models import Permission
from django.test import override_settings

from dashboard.templatetags.forkview import tokens
from tests.support.auth import browser_login
from tests.support.builders import Writer, turn_items

SHOTS = Path("/tmp/shots")
TIMEOUT = 15_000


def _in_thread(fn, *args):
    """Run sync code that uses async_to_sync off Playwright's event-loop thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


@pytest.mark.browser
class ChatBrowserTests(ChannelsLiveServerTestCase):
    serve_static = True

    @classmethod
    def setUpClass(cls):
        # Gotcha 4: a forked daphne must not inherit asgiref's executor without its thread.
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
        # Chat turns are traced (issue 16) as in a server process; ``seed_sessions`` (run by
        # earlier tests of this process) disables tracing process-wide, and daphne forks from it.
        set_tracing_disabled(False)
        super().setUpClass()
        SHOTS.mkdir(parents=True, exist_ok=True)

    @pytest.fixture(autouse=True)
    def _pw_page(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.set_default_timeout(TIMEOUT)

    # ---- helpers ------------------------------------------------------------------------------

    def login(self, page=None):
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("chatter", password="pw-123456789")
        for codename in ("continue_conversation", "view_agentsession"):
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="conversations", codename=codename)
            )
        browser_login(page or self.page, self.live_server_url, user)

    def seed(self, session_id: str, *, filler: int = 0) -> None:
        """Two turns; ``filler`` repeats a 3-token sentence in turn 2 (a longer history)."""

        def write():
            writer = Writer(session_id)
            writer.turn(turn_items(1, text="Plan a weekend in Lisbon"))
            writer.turn(turn_items(2, text="What about the budget?" + " More detail." * filler))

        _in_thread(write)

    def chat_url(self, session_id: str, branch: str = "main") -> str:
        return f"{self.live_server_url}/sessions/{quote(session_id)}/chat/?branch={branch}"

    def frames(self) -> list[dict]:
        received: list[dict] = []

        def on_socket(ws):
            ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

        self.page.on("websocket", on_socket)
        return received

    def wait_ready(self, page=None):
        page = page or self.page
        try:
            page.locator("#chat-input:not([disabled])").wait_for()
        except Exception:
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(SHOTS / "chat_debug_not_ready.png"), full_page=True)
            raise

    def send(self, text: str):
        self.page.fill("#chat-input", text)
        self.page.press("#chat-input", "Enter")

    def wait_turn_complete(self, turn: int):
        self.page.locator(f"article.turn-live[data-turn='{turn}'] .token-badge").wait_for()

    # ---- tests --------------------------------------------------------------------------------

    def test_stream_a_reply_then_edit_a_turn_into_a_new_branch(self):
        page = self.page
        self.login()
        self.seed("trip/lisbon", filler=400)  # over 1,000 input tokens: "1,234" in the badge
        frames = self.frames()
        page.goto(self.chat_url("trip/lisbon"))
        self.wait_ready()
        assert page.inner_text("#backend-label") == "offline demo model"
        assert page.locator("article.turn[data-turn]").count() == 2

        self.send("calculate 2+2*3")
        self.wait_turn_complete(3)
        turn = page.locator("article.turn-live[data-turn='3']")
        assert turn.locator(".bubble-user .text").inner_text() == "calculate 2+2*3"
        assert turn.locator(".tool-call .tool-name").inner_text().strip() == "calculate"
        assert turn.locator(".tool-output").text_content() == "8"  # in a closed <details>
        # The stored turn, rendered (markdown) as after a reload, replaced the streamed text.
        assert turn.locator(".bubble-assistant .text.markdown").inner_text().strip() == "2+2*3 = 8."
        deltas = [f for f in frames if f["type"] == "delta"]
        # Streamed: several frames (quick tokens share one), adding up to the answer.
        assert len(deltas) >= 2 and "".join(d["text"] for d in deltas) == "2+2*3 = 8."
        complete = next(f for f in frames if f["type"] == "turn_complete")
        usage = complete["usage"]
        assert complete["turn"] == 3 and usage["input_tokens"] > 1000
        # Live numbers read like the stored turns' (the server's `tokens` filter).
        up, down, total = (
            tokens(usage[k]) for k in ("input_tokens", "output_tokens", "total_tokens")
        )
        assert "," in up
        badge = " ".join(turn.locator(".token-badge").inner_text().split())
        assert badge == f"↑ {up} ↓ {down}"
        status = page.inner_text("#chat-status")
        assert status.startswith("Turn 3 stored on main · ")
        assert f" · free · {total} tokens (↑ {up} ↓ {down})" in status  # latency, cost, tokens
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / "chat_stream.png"), full_page=True)

        # Edit turn 2: a new branch with turn 1 + the edited turn 2.
        page.locator("article.turn[data-turn='2'] .chat-edit").click()
        editor = page.locator("article.turn[data-turn='2'] .chat-edit-form textarea")
        editor.fill("What about a cheaper budget? calculate 450/3")
        page.locator("article.turn[data-turn='2'] .chat-edit-save").click()
        page.locator("#new-branch-link").wait_for()
        self.wait_turn_complete(2)
        branch = page.inner_text("#current-branch")
        assert branch.startswith("branch_from_turn_2_")
        assert f"branch={branch}" in page.url
        assert [
            int(n)
            for n in page.locator("article.turn").evaluate_all(
                "els => els.map(e => e.dataset.turn)"
            )
        ] == [1, 2]
        assert page.locator("article.turn-live .tool-output").text_content() == "150"
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / "chat_fork.png"), full_page=True)

        # The review page of main shows the new branch in its tree / switcher.
        page.goto(f"{self.live_server_url}/sessions/{quote('trip/lisbon')}/?branch=main")
        assert page.locator(f"a:has-text('{branch}')").count() >= 1
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SHOTS / "chat_review_branches.png"), full_page=True)
        assert not self.errors, self.errors

    def test_fork_from_here_on_the_review_page_opens_a_new_branch_in_the_switcher(self):
        page = self.page
        self.login()
        self.seed("trip/porto")
        page.goto(f"{self.live_server_url}/sessions/{quote('trip/porto')}/?branch=main")
        fork = page.locator("article.turn[data-turn='2'] a.fork-link")
        assert fork.inner_text() == "Fork from here"
        fork.click()

        # The chat opens with turn 2 ready to edit.
        self.wait_ready()
        editor = page.locator("article.turn[data-turn='2'] .chat-edit-form textarea")
        editor.wait_for()
        assert editor.input_value() == "What about the budget?"
        page.screenshot(path=str(SHOTS / "chat_fork_from_review.png"), full_page=True)
        editor.fill("What about a budget of 300? calculate 300/3")
        page.locator("article.turn[data-turn='2'] .chat-edit-save").click()
        page.locator("#new-branch-link").wait_for()
        self.wait_turn_complete(2)
        branch = page.inner_text("#current-branch")
        assert branch.startswith("branch_from_turn_2_")

        # Back on the review page, turn 2's switcher counts the new sibling and leads to it.
        page.goto(f"{self.live_server_url}/sessions/{quote('trip/porto')}/?branch=main")
        switcher = page.locator("article.turn[data-turn='2'] .branch-switcher")
        assert switcher.locator(".switch-pos").inner_text() == "1/2"
        switcher.locator("a.switch-next").click()
        page.wait_for_url(f"**branch={branch}**")
        assert page.locator("article.turn[data-turn]").count() == 2
        assert "300/3" in page.inner_text("article.turn[data-turn='2'] .turn-user")
        assert page.locator("article.turn[data-turn='2'] .switch-pos").inner_text() == "2/2"
        page.screenshot(path=str(SHOTS / "chat_fork_switcher.png"), full_page=True)
        assert not self.errors, self.errors

    def test_regenerate_and_live_updates_on_the_review_page(self):
        self.login()
        self.seed("live-demo")
        review = self.page
        review.goto(f"{self.live_server_url}/sessions/live-demo/?branch=main")
        review.wait_for_function(
            "() => document.getElementById('live-updates').dataset.connected === '1'"
        )

        chat = review.context.new_page()
        chat.on("pageerror", lambda exc: self.errors.append(str(exc)))
        chat.set_default_timeout(TIMEOUT)
        chat.goto(self.chat_url("live-demo"))
        self.wait_ready(chat)
        chat.fill("#chat-input", "what time is it?")
        chat.press("#chat-input", "Enter")
        chat.locator("article.turn-live[data-turn='3'] .token-badge").wait_for()
        assert "The current time is" in chat.inner_text("article.turn-live .bubble-assistant")

        review.locator("#live-reload").wait_for()
        assert review.inner_text("#live-reload") == "1 new turn — reload"
        review.evaluate("window.scrollTo(0, 0)")
        review.screenshot(path=str(SHOTS / "chat_live_review.png"), full_page=True)

        # Regenerate turn 1 in the chat: a new branch, turn 1's message answered again.
        chat.locator("article.turn[data-turn='1'] .chat-regenerate").click()
        chat.locator("#new-branch-link").wait_for()
        chat.locator("article.turn-live[data-turn='1'] .token-badge").wait_for()
        assert chat.locator("article.turn").count() == 1
        assert "Plan a weekend in Lisbon" in chat.inner_text("article.turn-live .bubble-user")
        chat.evaluate("window.scrollTo(0, 0)")
        chat.screenshot(path=str(SHOTS / "chat_regenerate.png"), full_page=True)
        review.locator(".live-branch").wait_for()
        assert "from turn 1" in review.inner_text(".live-branch")
        review.locator("#live-reload").click()
        review.wait_for_load_state()
        assert review.locator("article.turn[data-turn]").count() == 3
        chat.close()
        assert not self.errors, self.errors


@pytest.mark.browser
@override_settings(FORKVIEW_OFFLINE_TOKEN_DELAY_MS=60)  # a turn streams for ~4 s: time to stop it
class ChatStopBrowserTests(ChatBrowserTests):
    """Stop and Esc cancel a running turn; a finished turn is the stored turn, rendered."""

    # The parent's tests run in the parent class only.
    test_stream_a_reply_then_edit_a_turn_into_a_new_branch = None  # type: ignore[assignment]
    test_fork_from_here_on_the_review_page_opens_a_new_branch_in_the_switcher = None  # type: ignore[assignment]
    test_regenerate_and_live_updates_on_the_review_page = None  # type: ignore[assignment]

    def stored_turns(self, session_id: str) -> list[int]:
        """The branch turn numbers stored (run in a throwaway thread: close its connection)."""
        from django.db import connections

        from conversations.models import MessageStructure

        try:
            return list(
                MessageStructure.objects.filter(session_id=session_id, message_type="user")
                .order_by("branch_turn_number")
                .values_list("branch_turn_number", flat=True)
            )
        finally:
            connections.close_all()

    def stop_mid_stream(self, how: str) -> None:
        page = self.page
        page.locator("article.turn-live .bubble-assistant.streaming").wait_for()
        stop = page.locator("#chat-stop")
        assert stop.is_visible()
        if how == "button":
            stop.click()
        else:
            page.keyboard.press("Escape")
        page.locator("#cancel-notice").wait_for()
        assert not stop.is_visible()
        assert page.locator("article.turn-live").count() == 0  # nothing stored, nothing shown

    def test_stop_button_and_escape_cancel_a_running_turn(self):
        page = self.page
        self.login()
        self.seed("stop/demo")
        frames = self.frames()
        page.goto(self.chat_url("stop/demo"))
        self.wait_ready()
        assert not page.locator("#chat-stop").is_visible()  # only while a turn runs

        self.send("tell me a story")
        page.locator("article.turn-live .bubble-assistant.streaming").wait_for()
        page.screenshot(path=str(SHOTS / "chat_running_stop.png"), full_page=True)
        self.stop_mid_stream("button")
        assert "Nothing of that turn was stored" in page.inner_text("#chat-status")
        assert page.input_value("#chat-input") == "tell me a story"  # ready to resend
        page.screenshot(path=str(SHOTS / "chat_cancelled.png"), full_page=True)
        assert [f["type"] for f in frames].count("cancelled") == 1
        assert "turn_complete" not in [f["type"] for f in frames]
        assert _in_thread(self.stored_turns, "stop/demo") == [1, 2]

        # Esc does the same.
        self.send("and another")
        self.stop_mid_stream("escape")
        assert [f["type"] for f in frames].count("cancelled") == 2
        assert _in_thread(self.stored_turns, "stop/demo") == [1, 2]

        # The socket goes on: the next turn is turn 3.
        page.fill("#chat-input", "")
        self.send("calculate 2+2*3")
        self.wait_turn_complete(3)
        assert _in_thread(self.stored_turns, "stop/demo") == [1, 2, 3]
        assert not self.errors, self.errors

    def test_a_finished_turn_is_shown_as_the_stored_turn_rendered(self):
        page = self.page
        self.login()
        page.goto(self.chat_url("render/demo"))
        self.wait_ready()
        self.send("what can you do")
        self.wait_turn_complete(1)
        turn = page.locator("article.turn-rendered[data-turn='1']")
        # The server's rendering: markdown (a paragraph, not the streamed bare text), the
        # trace line with latency, first token and cost, the token badge.
        assert turn.locator(".bubble-assistant .text.markdown p").count() >= 1
        line = " ".join(turn.locator(".trace-line").inner_text().split())
        assert "forkview-offline-demo" in line and "first token" in line and "free" in line
        assert turn.locator(".trace-latency").inner_text().strip()
        live_html = turn.evaluate("e => e.outerHTML")
        status = page.inner_text("#chat-status")
        assert status.startswith("Turn 1 stored on main · ") and " · free · " in status
        page.screenshot(path=str(SHOTS / "chat_rendered_turn.png"), full_page=True)

        # After a reload: the same turn, the same way.
        page.reload()
        self.wait_ready()
        reloaded = page.locator("article.turn[data-turn='1']")
        assert " ".join(reloaded.locator(".trace-line").inner_text().split()) == line
        assert reloaded.locator(".bubble-assistant .text.markdown").inner_html() == turn_html(
            live_html
        )
        # The waterfall opens on the chat page too.
        reloaded.locator(".trace-line").click()
        reloaded.locator(".waterfall .wf-row").first.wait_for()
        page.screenshot(path=str(SHOTS / "chat_rendered_reloaded.png"), full_page=True)
        assert not self.errors, self.errors


def turn_html(article_html: str) -> str:
    """The assistant markdown's inner HTML of an article's HTML."""
    import re

    match = re.search(r'<div class="text markdown">(.*?)</div>', article_html, re.S)
    assert match
    return match.group(1)
