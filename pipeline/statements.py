"""Notes -> statements: split each note into the statements it holds, and tag each with a language.

A note may list several points ("- a\\n- b", "1) a 2) b", two sentences). Shorthand such as
"more €€ for pilots" or "DIH + clusters -> link!!" stays whole: a piece too short to stand alone, or one
that starts in lower case after an abbreviation ("incl.", "e.g."), is glued back to its neighbour.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from lingua import ConfidenceValue, LanguageDetector
    from lingua import Language as LinguaLanguage
    from spacy.language import Language
    from spacy.tokens import Doc

from pipeline.readers.common import split_vote_markers
from pipeline.readers.text import BULLET, is_inline_enumeration
from pipeline.schema import NOTES, STATEMENTS, LanguageRoute, conform

log = logging.getLogger(__name__)

_ABBREVIATIONS = (
    "incl.",
    "e.g.",
    "i.e.",
    "esp.",
    "approx.",
    "etc.",
    "vs.",
    "gov.",
    "govt.",
    "resp.",
    "cf.",
    "min.",
    "max.",
    "no.",
    "dept.",
    "int.",
    "nat.",
    "reg.",
)
# "(?<!\s)": a run of white space is tried from its first character only, so a long run costs linear time
# (from every character of it, quadratic: a cell of 20,000 spaces took 9 s)
_INLINE_NUMBERING = re.compile(r"(?<!\s)\s+(?=\d{1,2}[.)]\s)")
_INLINE_BULLETS = re.compile(r"(?<!\s)\s+[•▪◦‣]\s+")
_MIN_WORDS = 2  # a piece with fewer alphabetic words is a fragment ("Important!"), not a statement


def import_spacy() -> ModuleType:
    """spaCy, imported without torch unless torch is loaded already. spaCy's thinc imports torch when it
    is installed (~1.5 s of the ~2.5 s import), and Harvest's pipelines (spaCy's CNN on numpy) never
    use it; the default encoder (ONNX) needs no torch either. A later ``import torch`` (the torch
    encoder) works as usual; only thinc's own torch interop, which nothing here uses, stays off."""
    if "spacy" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]  # thinc's `import torch` fails: no torch
        try:
            import spacy
        finally:
            del sys.modules["torch"]
    import spacy

    return spacy


@lru_cache(maxsize=4)
def load_splitter(lang: str = "en") -> Language:
    """What splitting needs: the language's tokenizer and spaCy's rule-based sentencizer.

    A trained pipeline's parser finds the same sentences in notes (no difference on the 951 notes of
    ecc2020-dev and ecc2020-dev2) at about 35x the cost (15 s against 0.4 s for 10,000 notes)."""
    nlp: Language = import_spacy().blank(lang)  # here, not at import: see load_nlp
    nlp.add_pipe("sentencizer")
    return nlp


@lru_cache(maxsize=4)
def load_nlp(name: str, lang: str = "en") -> Language:
    """The trained pipeline ``name`` if installed, else ``spacy.blank(lang)`` with a sentencizer: for
    labels and named subjects, which need tags and the parse (``load_splitter`` for splitting)."""
    spacy = import_spacy()  # ~1 s: loaded when a run needs it, not when the library is imported
    try:
        nlp: Language = spacy.load(name, exclude=["ner"])
    except OSError:
        log.warning("spaCy pipeline %r is not installed; using spacy.blank(%r) + sentencizer", name, lang)
        nlp = spacy.blank(lang)
    if not nlp.has_pipe("parser") and not nlp.has_pipe("senter") and not nlp.has_pipe("sentencizer"):
        nlp.add_pipe("sentencizer")
    return nlp


def pipeline_id(nlp: Language) -> str:
    """What a spaCy pipeline's findings depend on (language, name, version): for fingerprints and the
    folders of what is kept from its parses."""
    return f"{nlp.lang}_{nlp.meta.get('name', '')}-{nlp.meta.get('version', '')}"


def _items(text: str) -> list[str]:
    """Split a note on its own bullets and numbering (lines, or inline '1) a 2) b' / 'a • b')."""
    items: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for piece in _INLINE_BULLETS.split(line):
            if is_inline_enumeration(piece):
                items.extend(_INLINE_NUMBERING.split(piece))
            else:
                items.append(piece)
    if (
        len(items) > 1
        and not any(BULLET.match(i) for i in items)
        and any(_alpha_words(i) < _MIN_WORDS for i in items)
    ):
        # plain line breaks inside a cell: one statement per line only if each line stands alone
        items = [" ".join(items)]
    cleaned = (clean_statement(i) for i in items)
    return [c for c in cleaned if c]


def clean_statement(text: str) -> str:
    """Strip bullet glyphs, numbering, vote markers and stray whitespace."""
    text = BULLET.sub("", text, count=1)
    text, _ = split_vote_markers(text)
    return re.sub(r"\s+", " ", text).strip(" \t-–;,")


def _alpha_words(text: str) -> int:
    return sum(1 for w in re.findall(r"[^\W\d_]{2,}", text))


def _sentences(doc: Doc) -> list[str]:
    sentences: list[str] = []
    for sent in doc.sents:
        text = sent.text.strip()
        if not text:
            continue
        if sentences and (
            _alpha_words(text) < _MIN_WORDS
            or text[0].islower()
            or sentences[-1].lower().endswith(_ABBREVIATIONS)
            or _alpha_words(sentences[-1]) < _MIN_WORDS
        ):
            sentences[-1] = f"{sentences[-1]} {text}"
        else:
            sentences.append(text)
    return sentences


def split_statements(texts: Iterable[str], nlp: Language) -> list[list[str]]:
    """For each note text, the statements it holds, in order (each distinct text is split once)."""
    texts = list(texts)
    distinct = list(dict.fromkeys(texts))
    items = [_items(t) for t in distinct]
    flat = [i for note in items for i in note]
    docs = iter(nlp.pipe(flat, batch_size=1000))
    split: dict[str, list[str]] = {}
    for text, note in zip(distinct, items, strict=True):
        statements = [s for _ in note for s in _sentences(next(docs))]
        cleaned = (clean_statement(s) for s in statements)
        split[text] = [c for c in cleaned if c]
    return [list(split[t]) for t in texts]


# --------------------------------------------------------------------------- language
_EU_LANGUAGES = (
    "en",
    "de",
    "fr",
    "es",
    "it",
    "nl",
    "pl",
    "pt",
    "sv",
    "da",
    "fi",
    "cs",
    "el",
    "hu",
    "ro",
    "bg",
    "hr",
    "sk",
    "sl",
    "et",
    "lv",
    "lt",
)
#: Notes come from candidate and partner countries too (Albania, Bosnia, Iceland, Norway, Turkey), in
#: regional languages (Catalan, Basque, Welsh) and in Irish, an EU language the list above lacks (lingua
#: does not know Maltese, the other): Europe's other languages in Latin script that lingua knows. Without
#: them, their notes were read as English (Albanian, Basque, Irish) or as another language (Turkish as
#: Hungarian, Welsh as Lithuanian).
_OTHER_EUROPEAN_LANGUAGES = ("sq", "bs", "ca", "cy", "eu", "ga", "is", "nb", "tr")
#: The languages a text in the event's script is weighed for
_EUROPEAN_LANGUAGES = frozenset({*_EU_LANGUAGES, *_OTHER_EUROPEAN_LANGUAGES})

#: A text is in another language than the event's when the full models give the event's language less
#: than ``_OWN_BELOW`` and another language a lead of at least ``_LEAD`` over it. Short English
#: shorthand ("reduce red tape", "DIHs") looks foreign to any detector, so only a clear lead counts.
_OWN_BELOW = 0.15
_LEAD = 0.25


@lru_cache(maxsize=32)
def _detector(
    languages: frozenset[str], low_accuracy: bool = False, preload: bool = False
) -> LanguageDetector:
    """Lingua's detector of ``languages`` (ISO 639-1 codes): the full models, or the trigrams only
    (``low_accuracy``, ~10x faster) for a screening that names a language only when it leads by 0.25;
    ``preload`` loads all their models now rather than as texts need them."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    chosen = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in sorted(languages)]
    builder = LanguageDetectorBuilder.from_languages(*chosen)
    if low_accuracy:
        builder = builder.with_low_accuracy_mode().with_minimum_relative_distance(0.25)
    return (builder.with_preloaded_language_models() if preload else builder).build()


def preload_language_models(default: str = "en") -> None:
    """Load the full models of every language ``detect_languages`` weighs, for a process that
    serves many runs. Lingua keeps loaded models for the whole process, shared by every detector built
    later, so no run then loads one. Measured: ~3.7 s and ~850 MiB for 31 languages, which a run loads
    in the middle of its statements stage as soon as one of its texts is doubtful."""
    _detector(_EUROPEAN_LANGUAGES | {default}, preload=True)


def detect_languages(texts: list[str], default: str = "en") -> list[str]:
    """ISO 639-1 code per text; the event language unless another one is unmistakable.

    A text written mostly in another script than the event language's (Arabic, Chinese, Cyrillic in an
    English event) is in another language, however short: lingua names it among all the languages it
    knows of that script (``_in_other_scripts``). Every other distinct text of three words or more is
    screened by lingua's low-accuracy mode for Europe's languages; those it does not call the event's
    language are weighed by the full models of the same languages (``_clearly_other``). Measured on
    lingua's own test sentences (150 a language, whole and cut to 3, 4 and 6 words;
    ``benchmarks/languages.py``) and on 10,951 note texts (ecc2020-dev, ecc2020-dev2, 10,000 recombined
    sample notes): no English text is taken for another language; whole sentences in the 30 others are
    found in 93-100 % of cases, cut to three words in 54-100 % (shorter texts are read as the event's
    language)."""
    from lingua import IsoCode639_1, Language

    own = Language.from_iso_code_639_1(getattr(IsoCode639_1, default.upper()))
    distinct = list(dict.fromkeys(texts))
    found = _in_other_scripts(distinct, own)
    # fewer than three words is shorthand: the event's language, whatever a detector would say
    candidates = [t for t in distinct if t not in found and _alpha_words(t) >= 3]
    screener = _detector(_EUROPEAN_LANGUAGES | {default}, low_accuracy=True)
    screened = screener.detect_languages_in_parallel_of(candidates)
    doubtful = [t for t, lang in zip(candidates, screened, strict=True) if lang != own]
    # Every doubtful text is weighed among the same languages, whatever else is weighed beside it: lingua's
    # confidences are shares of the languages weighed. Among the union of the texts' two likeliest
    # languages, 24 of 500 texts (lingua's test sentences cut short, doubted English notes) went another
    # way alone than in one batch, so a run after one table judged its notes otherwise than a cold run.
    # Among each text's own two likeliest, English shorthand with names ("host: Lukas; host: Tomas") was
    # taken for Finnish and Slovene (docs/performance.md).
    detector = _detector(_EUROPEAN_LANGUAGES | {default})
    for text, values in zip(
        doubtful, detector.compute_language_confidence_values_in_parallel(doubtful), strict=True
    ):
        language = _clearly_other(values, own)
        if language is not None and not _mostly_in(detector, text, own):
            found[text] = language.iso_code_639_1.name.lower()
    return [found.get(t, default) for t in texts]


def _clearly_other(values: list[ConfidenceValue], own: LinguaLanguage) -> LinguaLanguage | None:
    """The likeliest language other than ``own`` when it clearly leads ``own`` (``_OWN_BELOW``,
    ``_LEAD``). Its lead is taken over ``own`` alone, not over the runner-up: close languages (Croatian
    and Bosnian, Danish and Norwegian) share the lead, and the text is still clearly not ``own``."""
    own_value = next((v.value for v in values if v.language == own), 0.0)
    other = next((v for v in values if v.language != own), None)
    if other is None or own_value >= _OWN_BELOW or other.value - own_value < _LEAD:
        return None
    return other.language


#: Lingua's groups of languages by script, as Unicode names the script of a letter ("LATIN SMALL ...")
_SCRIPT_GROUPS = {
    "LATIN": "all_with_latin_script",
    "CYRILLIC": "all_with_cyrillic_script",
    "ARABIC": "all_with_arabic_script",
    "DEVANAGARI": "all_with_devanagari_script",
}


def _script_of(text: str) -> str | None:
    """The script most of ``text``'s letters are in, as the first word of their Unicode names (LATIN,
    CYRILLIC, GREEK, ARABIC, CJK, HANGUL, ...); None for a text without letters."""
    if text.isascii():  # most notes: no letter to look up
        return "LATIN" if any(c.isalpha() for c in text) else None
    scripts = Counter(unicodedata.name(c, "?").split(" ", 1)[0] for c in text if c.isalpha())
    return scripts.most_common(1)[0][0] if scripts else None


def _in_other_scripts(texts: list[str], own: LinguaLanguage) -> dict[str, str]:
    """Texts written mostly in another script than the language ``own``, each with its likeliest
    language among all lingua knows. Lingua only weighs the languages of a text's script, so this loads
    few models (Chinese, Hebrew: none; Arabic ~0.6 s; Cyrillic ~1.2 s). Empty for an event language
    outside lingua's script groups (Greek)."""
    from lingua import Language

    written_in = next((s for s, group in _SCRIPT_GROUPS.items() if own in getattr(Language, group)()), None)
    if written_in is None:
        return {}
    foreign = [t for t in texts if _script_of(t) not in (written_in, None)]
    if not foreign:
        return {}
    detected = _any_language_detector().detect_languages_in_parallel_of(foreign)
    return {
        text: language.iso_code_639_1.name.lower()
        for text, language in zip(foreign, detected, strict=True)
        if language is not None and language != own
    }


@lru_cache(maxsize=1)
def _any_language_detector() -> LanguageDetector:
    """Lingua's detector of every language it knows, its models loaded as texts need them."""
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().build()


def _mostly_in(detector: LanguageDetector, text: str, own: LinguaLanguage) -> bool:
    """Whether most words of a note mixing languages ("Stärkere Zusammenarbeit: more € for café
    owners") are in ``own``; a tie counts for ``own``. Only the share of ``own`` is taken from this
    word-by-word reading: it names the other language less reliably than the whole text's confidence."""
    words: dict[LinguaLanguage, int] = {}
    for part in detector.detect_multiple_languages_of(text):
        words[part.language] = words.get(part.language, 0) + part.word_count
    return bool(words) and words.get(own, 0) == max(words.values())


# --------------------------------------------------------------------------- the step
NOTES_PER_CHUNK = 50_000  # rows are built as Python dicts: a chunk at a time keeps memory bounded


def notes_to_statements(notes: pd.DataFrame, nlp: Language, default_language: str = "en") -> pd.DataFrame:
    """One row per statement, keeping each note's provenance; ``statement_id`` = ``<note_id>-s<k>``."""
    if len(notes) > NOTES_PER_CHUNK:
        chunks = [
            _notes_to_statements(notes.iloc[start : start + NOTES_PER_CHUNK], nlp, default_language)
            for start in range(0, len(notes), NOTES_PER_CHUNK)
        ]
        return conform(pd.concat(chunks, ignore_index=True), STATEMENTS)
    return _notes_to_statements(notes, nlp, default_language)


def _notes_to_statements(notes: pd.DataFrame, nlp: Language, default_language: str) -> pd.DataFrame:
    notes = conform(notes, NOTES)
    split = split_statements(notes["text"].tolist(), nlp)
    rows = []
    for note, statements in zip(notes.to_dict("records"), split, strict=True):
        if note["text_en"]:  # one gloss for the whole note: the note stays one statement
            statements = [clean_statement(note["text"])]
        for position, text in enumerate(statements or [clean_statement(note["text"])], start=1):
            rows.append(
                {
                    **note,
                    "statement_id": f"{note['note_id']}-s{position}",
                    "position": position,
                    "text": text,
                    "declared_language": note["language"],
                    "language_route": LanguageRoute.GLOSS if note["text_en"] else LanguageRoute.OWN,
                }
            )
    if not rows:
        return STATEMENTS.empty()
    frame = pd.DataFrame(rows)
    undeclared = frame["declared_language"] == ""
    detected = detect_languages(frame.loc[undeclared, "text"].tolist(), default_language)
    frame.loc[undeclared, "language"] = detected
    return conform(frame, STATEMENTS)
