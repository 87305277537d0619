"""The terminal UI of the review queue (``consensus review``), on Textual.

Keyboard only, so it works in any terminal and over SSH: the queue on the left (most urgent
first; ``enter`` on a row claims that item), the claimed item on the right: its escalation
(priority, reason, principles), the prompt, the numbered candidates, every judge's vote (label,
confidence, critique) and the agreement figures of each decision. Keys (also in the footer):

====  =================================================================
a     accept the panel's candidate (the delivered one, else the first)
r     reject every candidate
1..9  prefer candidate N (the better one)
e     edit a revision (a text area; ctrl+s saves it as a revise review, escape cancels)
n     write a note for the next action (enter keeps it, escape drops it)
u     undo my last review (its item is mine again)
s     skip: release this item, claim the next
q     quit (the claimed item is released)
====  =================================================================

Every action goes through :class:`consensus.review.ReviewQueue`, so claims are atomic in the
store: several reviewers (several terminals, the HTTP API) never hold the same item. After a
review the next item is claimed at once.

Example::

    consensus review --store ~/.local/share/consensus/consensus.sqlite --reviewer ana
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static, TextArea

from consensus.review import ReviewError, ReviewQueue


class RevisionScreen(ModalScreen[str | None]):
    """Edit a revision: ctrl+s returns the text, escape returns None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save revision", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self, text: str, title: str):
        super().__init__()
        self._text = text
        self._title = title

    def compose(self) -> ComposeResult:
        with Vertical(id="revision-box"):
            yield Label(self._title)
            yield TextArea(self._text, id="revision")
            yield Footer()

    def on_mount(self) -> None:
        self.query_one("#revision", TextArea).focus()

    def action_save(self) -> None:
        _ = self.dismiss(self.query_one("#revision", TextArea).text)

    def action_cancel(self) -> None:
        _ = self.dismiss(None)


class NoteScreen(ModalScreen[str | None]):
    """Write a note: enter returns it, escape returns None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", priority=True)]

    def __init__(self, note: str):
        super().__init__()
        self._note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box"):
            yield Label("Note for the next action (enter keeps it, escape drops it)")
            yield Input(self._note, id="note", placeholder="why")

    def on_mount(self) -> None:
        self.query_one("#note", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        _ = self.dismiss(event.value)

    def action_cancel(self) -> None:
        _ = self.dismiss(None)


class ReviewApp(App[None]):
    """The review UI for one reviewer (see the module docstring).

    Args:
        queue: The queue over the store.
        reviewer: Who reviews (recorded with every review and claim).
        run_id: Review only this run's items (None: every run).
        refresh_s: How often the queue list is re-read (other reviewers' claims).
    """

    TITLE = "consensus review"
    CSS = """
    #queue-pane { width: 38; border-right: solid $accent; }
    #queue { height: 1fr; }
    #item-pane { width: 1fr; padding: 0 1; }
    #votes { height: auto; max-height: 16; }
    .section { margin-top: 1; text-style: bold; }
    #status { height: 1; background: $boost; padding: 0 1; }
    RevisionScreen, NoteScreen { align: center middle; }
    #revision-box { width: 90%; height: 80%; border: thick $accent; background: $surface; }
    #revision { height: 1fr; }
    #note-box { width: 80%; height: auto; border: thick $accent; background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "accept", "Accept"),
        Binding("r", "reject", "Reject"),
        *(Binding(str(i), f"prefer({i})", "Prefer N", show=i == 1) for i in range(1, 10)),
        Binding("e", "edit", "Edit revision"),
        Binding("n", "note", "Note"),
        Binding("u", "undo", "Undo"),
        Binding("s", "skip", "Skip"),
        Binding("q", "quit_review", "Quit"),
    ]

    def __init__(self, queue: ReviewQueue, reviewer: str, run_id: str | None = None, *,
                 refresh_s: float = 5.0):
        super().__init__()
        self.queue = queue
        self.reviewer = reviewer
        self.run_id = run_id
        self.refresh_s = refresh_s
        self.item: dict[str, Any] | None = None
        self.note = ""
        self.skipped: set[tuple[str, str]] = set()
        self.message = ""

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="queue-pane"):
                yield Label("Queue (enter claims)", classes="section")
                yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="item-pane"):
                yield Static(id="meta")
                yield Label("Prompt", classes="section")
                yield Static(id="prompt")
                yield Label("Candidates", classes="section")
                yield Static(id="candidates")
                yield Label("Votes", classes="section")
                yield DataTable(id="votes", zebra_stripes=True)
                yield Label("Agreement", classes="section")
                yield Static(id="agreement")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.reviewer} @ {getattr(self.queue.store, 'name', '')}"
        self.query_one("#queue", DataTable).add_columns("P", "reason", "item")
        self.query_one("#votes", DataTable).add_columns(
            "judge", "cand", "label", "conf", "critique")
        self.claim_next()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.refresh_queue)

    # ------------------------------------------------------------------ showing
    def refresh_queue(self) -> None:
        """Re-read the pending items (other reviewers may have claimed some)."""
        table = self.query_one("#queue", DataTable)
        table.clear()
        for row in self.queue.list(run_id=self.run_id, status="pending"):
            key = f"{row['run_id']}\x00{row['request_id']}"
            table.add_row(str(row["priority"]), row["reason"][:60],
                          f"{row['run_id']}/{row['request_id']}", key=key)

    def show(self, item: dict[str, Any] | None) -> None:
        """Show ``item`` (the claimed one), or that the queue is empty."""
        self.item = item
        votes = self.query_one("#votes", DataTable)
        votes.clear()
        if item is None:
            self._put("#meta", Text("Nothing to review: the queue is empty (or every item is "
                                    "claimed by someone else). q quits.", style="bold"))
            for wid in ("#prompt", "#candidates", "#agreement"):
                self._put(wid, Text(""))
            self.refresh_queue()
            return
        meta = Text()
        meta.append(f"{item['run_id']}/{item['request_id']}", style="bold")
        meta.append(f"  priority {item['priority']}  ({item['status']} by "
                    f"{item.get('claimed_by') or '-'})\n")
        meta.append(f"why: {item['reason']}\n")
        if item.get("principles"):
            meta.append(f"principles: {', '.join(item['principles'])}\n")
        meta.append(f"panel: {item['action']} ({item['outcome_reason']})")
        self._put("#meta", meta)
        self._put("#prompt", Text(item["prompt"] if item.get("prompt") is not None
                                  else "(prompt not recorded)"))
        cands = Text()
        for i, c in enumerate(item["candidates"], 1):
            mark = " (delivered)" if c["id"] == item.get("accepted_candidate") else ""
            cands.append(f"[{i}] {c['id']}{mark}", style="bold")
            cands.append(f"  by {c['generator']}" if c.get("generator") else "")
            cands.append(f"\n{c['text']}\n\n")
        self._put("#candidates", cands if item["candidates"] else Text("(none recorded)"))
        for v in item["votes"]:
            conf = "" if v["confidence"] is None else f"{v['confidence']:.2f}"
            label = v["label"] if v["label"] is not None else f"abstain: {v['abstained']}"
            critique = v["critique"] + (f" [{', '.join(v['violations'])}]"
                                        if v["violations"] else "")
            votes.add_row(v["judge"], v["candidate"], label, conf, Text(critique[:200]))
        agree = Text()
        for d in item["decisions"]:
            a = d.get("agreement") or {}
            prob = "" if d["probability"] is None else f" p={d['probability']:.2f}"
            agree.append(f"{d['subject']}: {d['label'] or 'no consensus'}{prob}", style="bold")
            if a:
                shares = ", ".join(f"{k} {v:.2f}" for k, v in a["shares"].items())
                agree.append(f"  valid {a['n_valid']}/{a['n_votes']}, shares {shares}, margin "
                             f"{a['margin']:.2f}, entropy {a['entropy']:.2f}"
                             + (", unanimous" if a["unanimous"] else ""))
            agree.append("\n")
        self._put("#agreement", agree)
        self.refresh_queue()

    def _put(self, selector: str, content: Text) -> None:
        self.query_one(selector, Static).update(content)

    def say(self, message: str) -> None:
        """Show ``message`` in the status line."""
        self.message = message
        note = f"  [note: {self.note}]" if self.note else ""
        self.query_one("#status", Static).update(Text(message + note))

    # ------------------------------------------------------------------ claiming
    def claim_next(self) -> None:
        """Claim the most urgent pending item not skipped in this session, and show it."""
        got: dict[str, Any] | None = None
        if not self.skipped:
            got = self.queue.claim(self.reviewer, run_id=self.run_id)
        else:
            for row in self.queue.list(run_id=self.run_id, status="pending"):
                if (row["run_id"], row["request_id"]) in self.skipped:
                    continue
                try:
                    got = self.queue.claim(self.reviewer, row["run_id"], row["request_id"])
                except ReviewError:
                    continue  # another reviewer was faster
                break
            if got is None:  # only skipped items are left: offer them again
                self.skipped.clear()
                got = self.queue.claim(self.reviewer, run_id=self.run_id)
        self.show(got)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "queue" or event.row_key.value is None:
            return
        run_id, request_id = event.row_key.value.split("\x00", 1)
        try:
            got = self.queue.claim(self.reviewer, run_id, request_id)
        except ReviewError as exc:
            self.say(f"cannot claim {run_id}/{request_id}: {exc}")
            self.refresh_queue()
            return
        self._release_current()
        self.show(got)
        self.say(f"claimed {run_id}/{request_id}")

    def _release_current(self) -> None:
        if self.item is not None:
            try:
                self.queue.release(self.item["run_id"], self.item["request_id"], self.reviewer)
            except ReviewError:
                pass  # not ours any more (reviewed, or released): nothing to give back
            self.item = None

    # ------------------------------------------------------------------ actions
    def _review(self, verdict: str, *, chosen: str | None = None,
                revision: str | None = None) -> None:
        if self.item is None:
            self.say("nothing claimed")
            return
        where = f"{self.item['run_id']}/{self.item['request_id']}"
        try:
            rid = self.queue.submit(self.item["run_id"], self.item["request_id"],
                                    self.reviewer, verdict, chosen=chosen, revision=revision,
                                    note=self.note)
        except ReviewError as exc:
            self.say(f"{verdict} refused: {exc}")
            return
        self.note = ""
        self.claim_next()
        self.say(f"{verdict} {where}" + (f" ({chosen})" if chosen else "")
                 + f": review {rid}; u undoes it")

    def action_accept(self) -> None:
        self._review("accept")

    def action_reject(self) -> None:
        self._review("reject")

    def action_prefer(self, n: int) -> None:
        if self.item is None:
            self.say("nothing claimed")
            return
        cands = self.item["candidates"]
        if not 1 <= n <= len(cands):
            self.say(f"no candidate {n}: this item has {len(cands)}")
            return
        self._review("prefer", chosen=cands[n - 1]["id"])

    def action_edit(self) -> None:
        if self.item is None:
            self.say("nothing claimed")
            return
        cands = self.item["candidates"]
        target = next((c for c in cands if c["id"] == self.item.get("accepted_candidate")),
                      cands[0] if cands else None)
        text = target["text"] if target else ""
        title = (f"Revision of {target['id']}" if target else "Revision") + \
            " (ctrl+s saves, escape cancels)"
        chosen = target["id"] if target else None

        def done(result: str | None) -> None:
            if result is None:
                self.say("revision cancelled")
            else:
                self._review("revise", chosen=chosen, revision=result)

        _ = self.push_screen(RevisionScreen(text, title), done)

    def action_note(self) -> None:
        def done(result: str | None) -> None:
            if result is not None:
                self.note = result.strip()
            self.say("note kept" if self.note else "no note")

        _ = self.push_screen(NoteScreen(self.note), done)

    def action_undo(self) -> None:
        try:
            undone = self.queue.undo(self.reviewer)
        except ReviewError as exc:
            self.say(f"undo: {exc}")
            return
        key = (undone["run_id"], undone["request_id"])
        if self.item is not None and (self.item["run_id"], self.item["request_id"]) != key:
            self._release_current()
        self.show(self.queue.details(*key))
        self.say(f"undid review {undone['review_id']} ({undone['verdict']}) of "
                 f"{key[0]}/{key[1]}: it is yours again")

    def action_skip(self) -> None:
        if self.item is None:
            self.claim_next()
            return
        key = (self.item["run_id"], self.item["request_id"])
        self._release_current()
        self.skipped.add(key)
        self.claim_next()
        self.say(f"skipped {key[0]}/{key[1]} (released)")

    def action_quit_review(self) -> None:
        self._release_current()
        self.exit()
