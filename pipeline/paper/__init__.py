"""The output paper: title page, executive summary, key recommendations per topic, methodology, then per
session, topic and question the ranked recommendations with their support, examples and a labelled bar
chart, and annexes (every theme with its support, the tables). In Markdown, one self-contained HTML file,
PDF (``pipeline.paper.pdf``, WeasyPrint from the HTML) and DOCX (``pipeline.paper.word``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape

from pipeline.event import Event
from pipeline.labels import phrasing_key, recommendation_text
from pipeline.languages import language_name
from pipeline.schema import Flag, LanguageRoute

TEMPLATES = Path(__file__).parent / "templates"
EXAMPLES_PER_THEME = 3


@dataclass
class Example:
    text: str  # verbatim, in the language it was written in
    table: str
    translation: str = ""  # the gloss or editor's translation the model read ('' = none)


@dataclass
class LanguageCount:
    """How the statements in one language other than the model's reached the themes (methodology)."""

    language: str
    n_statements: int
    n_glossed: int  # a facilitator's gloss or an editor's translation
    n_placed: int  # placed by the multilingual model, untranslated
    n_awaiting: int  # no route yet: in no theme and no count

    @property
    def name(self) -> str:
        return language_name(self.language)

    @property
    def routes(self) -> str:
        """How its statements were read, for a reader ("2 translated, 1 placed by the multilingual model")."""
        parts = (
            (self.n_glossed, "translated"),
            (self.n_placed, "placed by the multilingual model"),
            (self.n_awaiting, "awaiting translation"),
        )
        return ", ".join(f"{n} {how}" for n, how in parts if n)


@dataclass
class Recommendation:
    rank: int
    theme_id: str
    label: str
    text: str
    n_tables: int  # table sessions that raised it
    n_statements: int
    votes: int
    examples: list[Example]
    status: str = "approved"  # draft ones are marked in the paper
    n_sessions: int = 0  # table sessions that answered its question

    @property
    def share(self) -> float:
        return self.n_tables / self.n_sessions if self.n_sessions else 0.0


@dataclass
class KeyRecommendation:
    """One of a topic's (or the event's) strongest recommendations, with where it comes from."""

    topic: str
    question: str  # its text
    anchor: str  # the question's section id
    recommendation: Recommendation


@dataclass
class QuestionSection:
    id: str
    text: str
    n_sessions: int  # table sessions that answered the question
    n_statements: int
    recommendations: list[Recommendation]
    n_unassigned: int
    n_off_topic: int
    n_other_language: int


@dataclass
class TopicSection:
    id: str
    title: str
    kind: str
    questions: list[QuestionSection] = field(default_factory=list)
    key: list[KeyRecommendation] = field(default_factory=list)  # its strongest, across its questions


@dataclass
class Poll:
    """One live-poll question of a session, its options best first (``pipeline.polls``)."""

    question: str
    measure: str  # votes | percent | rank
    options: list[tuple[str, float]]

    def shown(self, value: float) -> str:
        if self.measure == "percent":
            return f"{value:g} %"
        if self.measure == "votes":
            return f"{int(value)} vote{'s' if value != 1 else ''}"
        return f"rank {int(value)}"


@dataclass
class SessionSection:
    id: str
    title: str
    topics: list[TopicSection] = field(default_factory=list)
    introduction: str = ""  # the editors' (Markdown)
    polls: list[Poll] = field(default_factory=list)


@dataclass
class CrossCutting:
    """A point raised under several topics (``pipeline.crosscutting``), with the recommendations it joins."""

    rank: int
    cross_id: str
    label: str
    n_tables: int  # table sessions that raised any of its recommendations
    topics: list[str]  # titles
    members: list[KeyRecommendation]
    status: str = "draft"


@dataclass
class TableRow:
    """One table of the annex: the rounds it sat and the statements it handed in."""

    table: str
    rounds: int
    n_statements: int
    topics: str


@dataclass
class Paper:
    title: str
    event: str
    n_tables: int
    n_sessions: int  # table sessions: a table in one round
    n_statements: int
    n_themes: int
    sessions: list[SessionSection]
    languages: list[LanguageCount] = field(default_factory=list)
    date: str = ""
    place: str = ""
    organisers: list[str] = field(default_factory=list)
    introduction: str = ""  # the editors' (Markdown)
    summary: list[KeyRecommendation] = field(default_factory=list)  # across the event
    n_unassigned: int = 0  # answers in no theme
    n_remarks: int = 0  # remarks about the session, never a recommendation
    drafts: int = 0  # recommendations no editor has approved yet (the paper is marked DRAFT)
    tables: list[TableRow] = field(default_factory=list)
    cross_cutting: list[CrossCutting] = field(default_factory=list)

    @property
    def n_awaiting(self) -> int:
        return sum(count.n_awaiting for count in self.languages)

    @property
    def recommendations(self) -> list[tuple[TopicSection, QuestionSection, Recommendation]]:
        return [
            (topic, question, r)
            for session in self.sessions
            for topic in session.topics
            for question in topic.questions
            for r in question.recommendations
        ]


KEY_PER_TOPIC = 3  # a topic's key recommendations
SUMMARY_SIZE = 8  # the executive summary's


@dataclass(frozen=True)
class _Quotable:
    """What ``_examples`` quotes of each statement: one index of the ids and Arrow columns by position,
    not a record (nor a Python string) per statement: a paper quotes a few of a theme's members, and
    a million statements' columns as Python objects would take hundreds of MB."""

    position: pd.Index
    columns: pa.Table  # text, text_en, table, round: as strings
    untranslated: np.ndarray  # placed by the multilingual model, with no translation

    def row(self, at: int) -> dict[str, str]:
        # a scalar at a time: Table.take on chunked columns (as read from parquet) concatenates every
        # chunk first, ~25 ms a call at a million statements, once per theme
        return {name: str(self.columns[name][at].as_py()) for name in self.columns.column_names}


def _quotable(statements: pd.DataFrame) -> _Quotable:
    columns = ["statement_id", "text", "text_en", "language_route", "table", "round"]
    frame = statements.reindex(columns=columns).fillna("")
    quoted = {name: pa.array(frame[name].astype("string")) for name in ("text", "text_en", "table", "round")}
    return _Quotable(
        position=pd.Index(frame["statement_id"].to_numpy(dtype=object)),
        columns=pa.table(quoted),
        untranslated=(frame["language_route"] == LanguageRoute.MULTILINGUAL).to_numpy(dtype=bool),
    )


def _member_rows(themes: pd.DataFrame, quotable: _Quotable) -> dict[str, np.ndarray]:
    """Per theme id, the rows of ``quotable`` of its members, in order: looked up for all themes at
    once (a lookup per theme builds an index of its ids each time: most of a re-run's paper)."""
    if themes.empty:
        return {}
    members = [str(ids).split("; ") for ids in themes["statement_ids"]]
    rows = quotable.position.get_indexer(pd.Index([m for ids in members for m in ids], dtype=object))
    ends = np.cumsum([len(ids) for ids in members])
    return dict(zip(themes["theme_id"], np.split(rows, ends[:-1]), strict=True))


def _examples(theme: Mapping[str, Any], rows: np.ndarray, quotable: _Quotable) -> list[Example]:
    """Verbatim statements, from different tables where possible, the representative one first; one
    no reader of the paper's language can read (placed by the multilingual model, untranslated) last.
    ``rows``: the theme's members in ``quotable`` (``_member_rows``)."""
    examples, seen_tables, seen_texts = [], set(), set()
    if (rows < 0).any():
        raise KeyError(f"theme {theme['theme_id']} has statements not in the export")
    for at in rows[quotable.untranslated[rows].argsort(kind="stable")]:  # stable: the order kept otherwise
        row = quotable.row(int(at))
        key = phrasing_key(row["text"])  # "X!!" is the same example as "x"
        if row["table"] in seen_tables or key in seen_texts:
            continue
        seen_tables.add(row["table"])
        seen_texts.add(key)
        where = f"{row['table']}, round {row['round']}"
        examples.append(Example(readable_quote(row["text"]), where, row["text_en"]))
        if len(examples) == EXAMPLES_PER_THEME:
            break
    return examples


# "+1", "+2 " before a note: a vote, not part of what was said
_LEADING_VOTE = re.compile(r"^\s*\+\d+\s*[:.)-]?\s*")
_WORD = re.compile(r"[^\W\d_]+")


def _unshout(word: re.Match[str]) -> str:
    """A word of a shouted note in lower case, unless it is short and no common word: an acronym (EU, DIH)."""
    from spacy.lang.en.stop_words import STOP_WORDS

    written = word.group()
    return written.lower() if len(written) >= 4 or written.lower() in STOP_WORDS else written


@lru_cache(maxsize=1 << 16)  # every publish quotes mostly the same statements again
def readable_quote(text: str) -> str:
    """A statement as the paper quotes it: without vote marker, agreement prefix, emphasis or shouting
    ("DATA!! MEASURE YOUR FOOTPRINT" → "Data! measure your footprint"), with a capital first; the export
    keeps it verbatim."""
    text = _LEADING_VOTE.sub("", text) or text
    letters = [c for c in text if c.isalpha()]
    if len(text.split()) > 1 and letters and sum(c.isupper() for c in letters) >= 0.6 * len(letters):
        text = _WORD.sub(_unshout, text)
    return recommendation_text(text)


def _strongest(topic: TopicSection, anchor_of: dict[str, str], size: int) -> list[KeyRecommendation]:
    """A topic's recommendations raised at the largest share of their question's table sessions."""
    ranked = sorted(
        (
            KeyRecommendation(topic.title, q.text, anchor_of[q.id], r)
            for q in topic.questions
            for r in q.recommendations
            if r.n_tables > 1
        ),
        key=lambda k: (-k.recommendation.share, -k.recommendation.n_tables, k.recommendation.rank),
    )
    return ranked[:size]


def _table_rows(statements: pd.DataFrame) -> list[TableRow]:
    """A row per table: its rounds, statements and topics. Aggregated column by column: iterating a
    groupby sorts a copy of the whole frame (every text; ~400 MB at a million statements)."""
    by_table = statements.groupby("table", sort=True)
    sizes, rounds = by_table.size(), by_table["round"].nunique()
    pairs = statements[["table", "topic"]].drop_duplicates().sort_values(["table", "topic"])
    topics = pairs.groupby("table", sort=True)["topic"].agg(lambda names: ", ".join(map(str, names)))
    return [
        TableRow(str(table), int(rounds[table]), int(sizes[table]), str(topics[table]))
        for table in sizes.index
    ]


def _cross_cutting(cross: pd.DataFrame | None, sessions: list[SessionSection]) -> list[CrossCutting]:
    """The cross-cutting themes whose recommendations are in the paper, each with those recommendations."""
    if cross is None or cross.empty:
        return []
    where: dict[str, KeyRecommendation] = {}
    for session in sessions:
        for topic in session.topics:
            for q in topic.questions:
                for r in q.recommendations:
                    where[r.theme_id] = KeyRecommendation(topic.title, q.text, f"{topic.id}-{q.id}", r)
    found: list[CrossCutting] = []
    for row in cross.sort_values("rank").to_dict("records"):
        members = [where[t] for t in str(row["theme_ids"]).split("; ") if t in where]
        if len({m.topic for m in members}) < 2:
            continue
        members.sort(key=lambda m: -m.recommendation.n_tables)
        found.append(
            CrossCutting(
                len(found) + 1,
                str(row["cross_id"]),
                str(row["label"]),
                int(row["n_tables"]),
                list(dict.fromkeys(m.topic for m in members)),
                members,
                str(row["status"]),
            )
        )
    return found


def _polls(polls: pd.DataFrame | None, session: str) -> list[Poll]:
    if polls is None or polls.empty:
        return []
    mine = polls[polls["session"] == session]
    return [
        Poll(
            str(question), str(rows["measure"].iloc[0]), list(zip(rows["option"], rows["value"], strict=True))
        )
        for question, rows in mine.groupby("question", sort=False)
    ]


def build_paper(
    event: Event,
    statements: pd.DataFrame,
    themes: pd.DataFrame,
    cross: pd.DataFrame | None = None,
    polls: pd.DataFrame | None = None,
) -> Paper:
    """Arrange the ranked themes as the paper's sections; ``statements`` carry theme_id and flag;
    ``cross``: the cross-cutting themes to publish (``pipeline.crosscutting``); ``polls``: the live polls
    (``pipeline.polls``)."""
    quotable = _quotable(statements)
    member_rows = _member_rows(themes, quotable)
    # counts per question in one pass over each frame (a paper can have hundreds of questions)
    keys = ["topic", "question"]
    by_question = [statements.topic, statements.question]
    flags = statements["flag"] if "flag" in statements else pd.Series("", index=statements.index)
    counts = pd.DataFrame(
        {
            "n_statements": statements.groupby(keys).size(),
            # table sessions per question: a groupby needs no copy of the frame, drop_duplicates does
            "n_sessions": statements.groupby([*keys, "table", "round"]).size().groupby(level=keys).size(),
            "n_unassigned": (statements["theme_id"] == "").groupby(by_question).sum(),
            "n_off_topic": (flags == Flag.OFF_TOPIC).groupby(by_question).sum(),
            "n_other_language": (flags == Flag.LANGUAGE).groupby(by_question).sum(),
        }
    )
    per_question = {key: {str(c): int(v) for c, v in row.items()} for key, row in counts.iterrows()}
    themes_of: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for theme in themes.sort_values("rank", kind="stable").to_dict("records"):
        themes_of.setdefault((theme["topic"], theme["question"]), []).append(
            {str(k): v for k, v in theme.items()}
        )
    empty = {str(c): 0 for c in counts.columns}
    sessions = []
    for session in event.sessions:
        session_section = SessionSection(
            session.id, session.title, introduction=session.introduction, polls=_polls(polls, session.id)
        )
        for topic in session.topics:
            topic_section = TopicSection(topic.id, topic.title, topic.kind)
            for question in topic.questions:
                ranked = themes_of.get((topic.id, question.id), [])
                counts_here = per_question.get((topic.id, question.id), empty)
                recommendations = [
                    Recommendation(
                        int(t["rank"]),
                        t["theme_id"],
                        t["label"],
                        t["recommendation"],
                        int(t["n_tables"]),
                        int(t["n_statements"]),
                        int(t["votes"]),
                        _examples(t, member_rows[t["theme_id"]], quotable),
                        str(t.get("status") or "approved"),
                        counts_here["n_sessions"],
                    )
                    for t in ranked
                ]
                topic_section.questions.append(
                    QuestionSection(
                        question.id, question.text, recommendations=recommendations, **counts_here
                    )
                )
            anchors = {q.id: f"{topic.id}-{q.id}" for q in topic.questions}
            topic_section.key = _strongest(topic_section, anchors, KEY_PER_TOPIC)
            session_section.topics.append(topic_section)
        sessions.append(session_section)
    every_topic = [t for s in sessions for t in s.topics]
    summary = sorted(
        (k for t in every_topic for k in t.key[:1]),  # each topic's strongest, then the strongest overall
        key=lambda k: (-k.recommendation.share, -k.recommendation.n_tables),
    )[:SUMMARY_SIZE]
    flags = statements["flag"] if "flag" in statements else pd.Series("", index=statements.index)
    answers = flags == ""
    return Paper(
        title=event.title or event.id,
        event=event.id,
        n_tables=int(statements["table"].nunique()),
        n_sessions=int(statements[["table", "round"]].drop_duplicates().shape[0]),
        n_statements=len(statements),
        n_themes=len(themes),
        sessions=sessions,
        languages=language_counts(statements),
        date=event.date,
        place=event.place,
        organisers=list(event.organisers),
        introduction=event.introduction,
        summary=summary,
        n_unassigned=int((answers & (statements["theme_id"] == "")).sum()),
        n_remarks=int((flags == Flag.OFF_TOPIC).sum()),
        drafts=int((themes["status"] == "draft").sum()) if "status" in themes else 0,
        tables=_table_rows(statements),
        cross_cutting=_cross_cutting(cross, sessions),
    )


def language_counts(statements: pd.DataFrame) -> list[LanguageCount]:
    """Per language other than the model's, most statements first (``schema.LanguageRoute``)."""
    if "language_route" not in statements:
        return []
    routes = statements["language_route"].astype(str)
    other = statements[routes != LanguageRoute.OWN]
    counts = []
    for language, rows in other.groupby("language", sort=False):
        route = rows["language_route"]
        counts.append(
            LanguageCount(
                str(language),
                len(rows),
                int(route.isin([LanguageRoute.GLOSS, LanguageRoute.TRANSLATION]).sum()),
                int((route == LanguageRoute.MULTILINGUAL).sum()),
                int((route == LanguageRoute.AWAITING).sum()),
            )
        )
    return sorted(counts, key=lambda c: (-c.n_statements, c.name))


@lru_cache(maxsize=2)  # compiled templates are reused by every publish of the process
def _environment(autoescape: bool) -> Environment:
    """``autoescape`` for the HTML paper: every value escaped, whatever the template's file name is
    (``select_autoescape`` goes by the name's ending, and ``paper.html.j2`` ends in ``.j2``)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["chart"] = chart_html
    env.filters["markdown"] = markdown_html
    env.filters["percent"] = lambda share: f"{share:.0%}"
    return env


def markdown_html(text: str) -> Markup:
    """The editors' Markdown (introductions) as HTML; HTML typed into it is shown as text, never run."""
    from markdown_it import MarkdownIt

    return Markup(MarkdownIt("commonmark", {"html": False}).render(text or ""))


def render_markdown(paper: Paper) -> str:
    return _environment(False).get_template("paper.md.j2").render(paper=paper)


def render_html(paper: Paper) -> str:
    return _environment(True).get_template("paper.html.j2").render(paper=paper)


BAR_LABEL_CHARS = 90
#: The longest bar, as a share of the chart's width: the rest is for the value written beside it.
BAR_SPAN = 0.73
#: Bars per image in the DOCX: an image never breaks across pages, and 20 bars fill about 80 % of an A4
#: page at the width the DOCX gives them.
BARS_PER_IMAGE = 20


@dataclass(frozen=True)
class Bar:
    label: str
    share: float  # of the longest bar (BAR_SPAN of the chart's width), 0-1
    value: str  # written beside the bar


@dataclass(frozen=True)
class Chart:
    """A labelled bar chart: a question's recommendations by their table sessions, or a poll's options."""

    title: str
    bars: list[Bar]
    poll: bool = False


def chart_of(item: QuestionSection | Poll) -> Chart:
    """A question's chart (a bar per recommendation: the table sessions that raised it, out of those that
    answered the question) or a poll's (a bar per option; a rank's bar is longer the better)."""
    if isinstance(item, Poll):
        top = max((v for _, v in item.options), default=1.0) or 1.0
        return Chart(
            item.question,
            [
                Bar(
                    option,
                    _clamped((top - value + 1) / top if item.measure == "rank" else value / top),
                    item.shown(value),
                )
                for option, value in item.options
            ],
            poll=True,
        )
    sessions = max(1, item.n_sessions)
    return Chart(
        f"{item.text}: table sessions per recommendation",
        [
            Bar(
                f"{r.rank}. {_bar_label(r.text)}",
                _clamped(r.n_tables / sessions),
                f"{r.n_tables} of {item.n_sessions} table sessions",
            )
            for r in item.recommendations
        ],
    )


def _clamped(share: float) -> float:
    return min(1.0, max(0.0, share))


def _bar_label(text: str) -> str:
    return text if len(text) <= BAR_LABEL_CHARS else text[: BAR_LABEL_CHARS - 1].rstrip() + "…"


def chart_html(item: QuestionSection | Poll) -> Markup:
    """The chart as HTML, a block per bar, for the HTML paper and its PDF. Not SVG: WeasyPrint lays out an
    SVG text glyph by glyph (about 50 layouts a label: 4-5 s of the 24 s PDF of the 8,030-note event's
    paper) and cannot break an SVG across pages (the chart of a question with 67 recommendations lost its
    last 38 bars at the foot of its page); blocks break between bars."""
    chart = chart_of(item)
    rows = "".join(
        f'<div class="bar"><div class="bar-label">{escape(bar.label)}</div><div class="bar-line">'
        f'<span class="bar-fill" style="width: {bar.share * BAR_SPAN:.1%}"></span>'
        f'<span class="bar-value">{escape(bar.value)}</span></div></div>'
        for bar in chart.bars
    )
    kind = "chart poll" if chart.poll else "chart"
    return Markup(f'<figure class="{kind}" role="img" aria-label="{escape(chart.title)}">{rows}</figure>')


def chart_svg(chart: Chart, width: int = 640) -> str:
    """``chart`` as an SVG of its own (for images: the DOCX's PNGs)."""
    row_height, bar_height, gap = 40, 14, 6
    colour = "#ffb400" if chart.poll else "#003399"
    height = len(chart.bars) * row_height + gap
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif"><title>{escape(chart.title)}</title>'
    ]
    for i, bar in enumerate(chart.bars):
        y = gap + i * row_height
        length = max(2.0, bar.share * BAR_SPAN * width)
        parts.append(
            f'<text x="0" y="{y + 11}" font-size="12" fill="#1d2733">{escape(bar.label)}</text>'
            f'<rect x="0" y="{y + 16}" width="{length:.1f}" height="{bar_height}" rx="3" fill="{colour}"/>'
            f'<text x="{length + 6:.1f}" y="{y + 27}" font-size="12" fill="#4a5a6a">'
            f"{escape(bar.value)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def chart_pngs(item: QuestionSection | Poll) -> list[bytes]:
    """The chart as PNGs of at most ``BARS_PER_IMAGE`` bars each, for documents that take images (the
    DOCX), where an image taller than a page is cut at its foot."""
    import cairosvg

    chart = chart_of(item)
    pieces = [
        Chart(chart.title, chart.bars[start : start + BARS_PER_IMAGE], chart.poll)
        for start in range(0, max(1, len(chart.bars)), BARS_PER_IMAGE)
    ]
    return [bytes(cairosvg.svg2png(bytestring=chart_svg(p).encode(), output_width=1280)) for p in pieces]
