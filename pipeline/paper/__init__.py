"""The output paper: per session, topic and question, the ranked recommendations with their support,
examples and a bar chart, in Markdown and in one self-contained HTML file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader

from pipeline.event import Event
from pipeline.labels import phrasing_key
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


@dataclass
class Recommendation:
    rank: int
    theme_id: str
    label: str
    text: str
    n_tables: int
    n_statements: int
    votes: int
    examples: list[Example]


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


@dataclass
class SessionSection:
    id: str
    title: str
    topics: list[TopicSection] = field(default_factory=list)


@dataclass
class Paper:
    title: str
    event: str
    n_tables: int
    n_sessions: int
    n_statements: int
    n_themes: int
    sessions: list[SessionSection]
    languages: list[LanguageCount] = field(default_factory=list)

    @property
    def n_awaiting(self) -> int:
        return sum(count.n_awaiting for count in self.languages)


def _examples(theme: Mapping[str, Any], by_id: dict[str, dict[str, Any]]) -> list[Example]:
    """Verbatim statements, from different tables where possible, the representative one first; one
    no reader of the paper's language can read (placed by the multilingual model, untranslated) last."""
    examples, seen_tables, seen_texts = [], set(), set()
    members = theme["statement_ids"].split("; ")
    untranslated = {sid for sid in members if by_id[sid]["language_route"] == LanguageRoute.MULTILINGUAL}
    for sid in sorted(members, key=lambda sid: sid in untranslated):  # stable: the order kept otherwise
        row = by_id[sid]
        key = phrasing_key(row["text"])  # "X!!" is the same example as "x"
        if row["table"] in seen_tables or key in seen_texts:
            continue
        seen_tables.add(row["table"])
        seen_texts.add(key)
        examples.append(
            Example(row["text"], f"{row['table']}, round {row['round']}", str(row.get("text_en") or ""))
        )
        if len(examples) == EXAMPLES_PER_THEME:
            break
    return examples


def build_paper(event: Event, statements: pd.DataFrame, themes: pd.DataFrame) -> Paper:
    """Arrange the ranked themes as the paper's sections; ``statements`` carry theme_id and flag."""
    by_id = {
        str(r["statement_id"]): {str(k): v for k, v in r.items()}
        for r in statements.reindex(
            columns=["statement_id", "text", "text_en", "language_route", "table", "round"]
        )
        .fillna("")
        .to_dict("records")
    }
    # counts per question in one pass over each frame (a paper can have hundreds of questions)
    keys = ["topic", "question"]
    by_question = [statements.topic, statements.question]
    flags = statements["flag"] if "flag" in statements else pd.Series("", index=statements.index)
    counts = pd.DataFrame(
        {
            "n_statements": statements.groupby(keys).size(),
            "n_sessions": statements.drop_duplicates([*keys, "table", "round"]).groupby(keys).size(),
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
        session_section = SessionSection(session.id, session.title)
        for topic in session.topics:
            topic_section = TopicSection(topic.id, topic.title, topic.kind)
            for question in topic.questions:
                ranked = themes_of.get((topic.id, question.id), [])
                recommendations = [
                    Recommendation(
                        int(t["rank"]),
                        t["theme_id"],
                        t["label"],
                        t["recommendation"],
                        int(t["n_tables"]),
                        int(t["n_statements"]),
                        int(t["votes"]),
                        _examples(t, by_id),
                    )
                    for t in ranked
                ]
                topic_section.questions.append(
                    QuestionSection(
                        question.id,
                        question.text,
                        recommendations=recommendations,
                        **per_question.get((topic.id, question.id), empty),
                    )
                )
            session_section.topics.append(topic_section)
        sessions.append(session_section)
    return Paper(
        title=event.title or event.id,
        event=event.id,
        n_tables=int(statements["table"].nunique()),
        n_sessions=int(statements[["table", "round"]].drop_duplicates().shape[0]),
        n_statements=len(statements),
        n_themes=len(themes),
        sessions=sessions,
        languages=language_counts(statements),
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
    return sorted(counts, key=lambda c: (-c.n_statements, c.language))


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
    env.globals["bar_chart"] = bar_chart
    return env


def render_markdown(paper: Paper) -> str:
    return _environment(False).get_template("paper.md.j2").render(paper=paper)


def render_html(paper: Paper) -> str:
    return _environment(True).get_template("paper.html.j2").render(paper=paper)


def bar_chart(section: QuestionSection, width: int = 560) -> str:
    """An inline SVG bar per recommendation: tables that raised it, out of the tables that answered."""
    from markupsafe import Markup, escape

    bar_height, gap, label_width = 18, 6, 36
    rows = section.recommendations
    height = len(rows) * (bar_height + gap) + gap
    scale = (width - label_width - 60) / max(1, section.n_sessions)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(section.text)}: tables per recommendation</title>",
    ]
    for i, r in enumerate(rows):
        y = gap + i * (bar_height + gap)
        length = max(2.0, r.n_tables * scale)
        parts.append(
            f'<text x="0" y="{y + 13}" class="rank">{r.rank}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" rx="3">'
            f"<title>{escape(r.text)}</title></rect>"
            f'<text x="{label_width + length + 6:.1f}" y="{y + 13}">{r.n_tables} of '
            f"{section.n_sessions}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
