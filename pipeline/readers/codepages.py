"""Which legacy Windows code page a note file that is not UTF-8 was saved in.

Excel's "CSV" and Notepad's "ANSI" write the code page of the Windows they run on: cp1252 in Western
Europe, cp1250 in Central Europe, cp1257 in the Baltic states, cp1254 in Turkey, cp1251 for Cyrillic and
cp1253 for Greek. The bytes do not say which. The Latin code pages share ASCII and differ in the accented
letters, so a file read in the wrong one keeps its words but swaps letters ("pøíležitost" for
"příležitost"). Each reading is weighed by lingua for the languages its code page serves
(``choose_latin_code_page``). Cyrillic and Greek read in a Latin code page become runs of accented
letters (``ACCENTED_RUN``); such a file is read in the Cyrillic or Greek code page whose script its
letters then are in (``other_script_reading``), and refused with a request for UTF-8 when neither fits.
Measured on lingua's test sentences in 36 languages, each saved in its code page
(``benchmarks/encodings.py``, ``benchmarks/results/encodings.md``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lingua import Language as LinguaLanguage
    from lingua import LanguageDetector

#: Languages (ISO 639-1) by the Windows code page their Windows saves "CSV" and "ANSI" text in
CODE_PAGES: dict[str, tuple[str, ...]] = {
    "cp1252": (
        *("en", "fr", "de", "es", "it", "pt", "nl", "sv"),
        *("da", "fi", "is", "ca", "eu", "ga", "cy", "nb"),
    ),
    "cp1250": ("pl", "cs", "sk", "hu", "hr", "sl", "ro", "bs", "sq"),
    "cp1257": ("lt", "lv", "et"),
    "cp1254": ("tr",),
    "cp1251": ("bg", "uk", "mk", "ru", "be", "sr"),
    "cp1253": ("el",),
}
#: The code pages of Latin script, in the order they are tried (on an even tie, the first wins)
LATIN_CODE_PAGES = ("cp1252", "cp1250", "cp1257", "cp1254")
CODE_PAGE_NAMES = {
    "cp1252": "Western European (cp1252)",
    "cp1250": "Central European (cp1250)",
    "cp1257": "Baltic (cp1257)",
    "cp1254": "Turkish (cp1254)",
    "cp1251": "Cyrillic (cp1251)",
    "cp1253": "Greek (cp1253)",
}
#: The code pages of other scripts, and the script (as Unicode names its letters) they write
OTHER_SCRIPT_CODE_PAGES = {"cp1251": "CYRILLIC", "cp1253": "GREEK"}

#: A word of four or more accented letters and nothing else: Cyrillic or Greek letters read in a Latin
#: code page ("Ïîâå÷å"); no language of Latin script writes such words.
ACCENTED_RUN = re.compile(r"(?<![^\W\d_])(?:(?![a-zA-Z])[^\W\d_]){4,}(?![^\W\d_])")
#: The symbols cp1252 reads where cp1250 has a letter ("£¥¯³¹¼¾¿": Ł Ą Ż ł ą Ľ ľ ż), from the code pages;
#: standing inside a word ("wspó³praca") they make a reading no reading at all.
_CENTRAL_LETTERS_AS_SYMBOLS = "".join(
    western
    for western, central in (
        (bytes([code]).decode("cp1252"), bytes([code]).decode("cp1250")) for code in range(0xA0, 0x100)
    )
    if central.isalpha() and central != "ˇ" and not western.isalpha() and not western.isspace()
)
SYMBOL_IN_WORD = re.compile(rf"(?<=[^\W\d_])[{re.escape(_CENTRAL_LETTERS_AS_SYMBOLS)}](?=[^\W\d_])")
#: Readings whose share for their code page's languages is within this of the best one's are as good;
#: among them the one whose words most agree on one language wins (``_word_agreement``)
_TIE = 0.05
#: Bytes weighed at most (of the lines beyond ASCII, for the Latin code pages): plenty to tell, and a
#: 10 MB file is not weighed whole (one line of 10 MB took 22 s)
_BYTES_WEIGHED = 100_000
#: How sure lingua must be of the language of the words all readings share to let it decide a tie
_SURE = 0.5
#: A word of ASCII letters only, which reads the same in every code page (each counted once: a CSV
#: repeats its topic and question on every row)
_SHARED_WORD = re.compile(rb"(?<![A-Za-z\x80-\xff])[A-Za-z]{2,}(?![A-Za-z\x80-\xff])")
#: The vowels of the Cyrillic alphabets of Europe: about 0.4 of the letters of their prose. Of lingua's
#: test sentences in Bulgarian, Russian, Ukrainian, Macedonian, Belarusian and Serbian, under 1 % have
#: less than 0.33 (the least 0.24); of Greek ones read in cp1251, 1 % have more than 0.32.
_CYRILLIC_VOWELS = frozenset("аеёиоуыэюяіїєўАЕЁИОУЫЭЮЯІЇЄЎ")
#: A word with a letter beyond ASCII
_NON_ASCII_WORD = re.compile(r"[^\W\d_]*[^\W\d_a-zA-Z][^\W\d_]*")
#: Runs of letters and bytes above ASCII: the words whose reading differs between code pages
_WORD_BYTES = re.compile(rb"[^\x00-\x40\x5b-\x60\x7b-\x7f]+")


@lru_cache(maxsize=1)  # the upload's receipt asks again for the file just read (``common.read_as``)
def legacy_reading(data: bytes) -> tuple[str, str] | None:
    """The Windows code page ``data`` was most likely saved in, and its text; None when no reading is
    plausible."""
    readings = latin_readings(data)
    if readings:
        code_page = choose_latin_code_page(data, readings)
        return code_page, readings[code_page]
    return other_script_reading(data)


def other_script_reading(data: bytes) -> tuple[str, str] | None:
    """``data`` in the Cyrillic or Greek code page, when its letters beyond ASCII are then in that
    script and read plausibly (``_plausible_in``). Should both, the Cyrillic reading is taken when a
    share of its letters like Cyrillic prose's are vowels (``_CYRILLIC_VOWELS``): the Greek vowels read
    in cp1251 are mostly consonants ("Καλησπερα" is "Кблзуресб")."""
    readings = {}
    for code_page in OTHER_SCRIPT_CODE_PAGES:
        try:
            text = data.decode(code_page)
        except UnicodeDecodeError:
            continue
        if _plausible_in(text[:_BYTES_WEIGHED], code_page):  # one byte a letter: the first 100 kB
            readings[code_page] = text
    if len(readings) == 2:
        letters = [c for c in readings["cp1251"][:_BYTES_WEIGHED] if c.isalpha() and not c.isascii()]
        vowels = sum(c in _CYRILLIC_VOWELS for c in letters)
        code_page = "cp1251" if vowels >= 0.3 * len(letters) else "cp1253"
        return code_page, readings[code_page]
    return next(iter(readings.items()), None)


def _plausible_in(text: str, code_page: str) -> bool:
    """Whether ``text``, read in the Cyrillic or Greek code page, could be so: 95 % of its letters beyond
    ASCII in the script, most of its words in it alone (not Latin ones with a stray letter), and no letter
    that gives a misreading away inside a word. In cp1251, Greek's "ά έ ή ί" read as the capitals
    "Ь Э Ю Я" between letters ("ДЮмпх" for "Δήμου"); in cp1253, the Cyrillic "т" reads as the final
    sigma "ς", which Greek writes only at a word's end."""
    import unicodedata

    script = OTHER_SCRIPT_CODE_PAGES[code_page]
    letters = [c for c in text if c.isalpha() and not c.isascii()]
    in_script = sum(unicodedata.name(c, "").startswith(script) for c in letters)
    if not letters or in_script < 0.95 * len(letters):
        return False
    words = _NON_ASCII_WORD.findall(text)
    mixed = sum(any(c.isascii() for c in word) for word in words)
    if mixed > len(words) / 2:  # ("cafЃ"); a Latin "i" typed in a Ukrainian word is fine
        return False
    if code_page == "cp1253":
        return not any("ς" in word[:-1] for word in words)
    return not any(
        before.isalpha() and letter in "ЬЭЮЯ" and after.islower()
        for word in words
        for before, letter, after in zip(word, word[1:], word[2:], strict=False)
    )


def latin_readings(data: bytes) -> dict[str, str]:
    """The text in each Latin code page that decodes ``data`` to a plausible reading, in
    ``LATIN_CODE_PAGES`` order: no undefined byte, no word of accented letters only (``ACCENTED_RUN``),
    no symbol inside a word (``SYMBOL_IN_WORD``)."""
    readings: dict[str, str] = {}
    for code_page in LATIN_CODE_PAGES:
        try:
            text = data.decode(code_page)
        except UnicodeDecodeError:
            continue
        if ACCENTED_RUN.search(text) or SYMBOL_IN_WORD.search(text):
            continue
        readings[code_page] = text
    return readings


def choose_latin_code_page(data: bytes, readings: dict[str, str]) -> str:
    """The code page of ``readings`` (``latin_readings``) that ``data`` was most likely saved in.

    Only the lines with bytes above ASCII are weighed (their first ``_BYTES_WEIGHED``): in an English file,
    its one Czech note decides. Lingua's trigram models of every language the Latin code pages serve weigh
    each reading, which scores the share its code page's languages get. Two readings can both score ~1:
    lingua takes a letter only one language writes as proof ("ð" Icelandic, "ė" Lithuanian), and a
    misread letter can be such a one. Then the words all readings share (``_SHARED_WORD``) decide when
    lingua is sure of their language (``_SURE``), else the reading whose words, one by one, agree most on
    one language of its code page. Measured on lingua's test sentences saved in their language's code page
    (``benchmarks/encodings.py``)."""
    if len(set(readings.values())) == 1:
        return next(iter(readings))
    beyond_ascii = [line for line in data.split(b"\n") if max(line, default=0) >= 0x80]
    sample = b"\n".join(beyond_ascii)[:_BYTES_WEIGHED]
    lines = sample.split(b"\n")
    detector = _detector()
    share: dict[str, float] = {}
    for code_page in readings:
        values = detector.compute_language_confidence_values(sample.decode(code_page))
        share[code_page] = sum(v.value for v in values if _code(v.language) in CODE_PAGES[code_page])
    best = max(share.values())
    tied = [code_page for code_page in readings if share[code_page] >= best - _TIE]
    shared = " ".join(dict.fromkeys(w.decode() for line in lines for w in _SHARED_WORD.findall(line)))
    if len(tied) > 1 and len(shared.split()) >= 3:
        values = detector.compute_language_confidence_values(shared)
        if values and values[0].value >= _SURE:
            tied = [c for c in tied if _code(values[0].language) in CODE_PAGES[c]] or tied
    if len(tied) == 1:
        return tied[0]
    words = list(dict.fromkeys(w for line in lines for w in _WORD_BYTES.findall(line) if max(w) >= 0x80))
    return max(tied, key=lambda code_page: _word_agreement(detector, words, code_page))


def _word_agreement(detector: LanguageDetector, words: list[bytes], code_page: str) -> float:
    """The mean confidence, word by word, of the language of ``code_page`` its reading of ``words``
    agrees on most. A misread letter proves a different language in different words."""
    serves = set(CODE_PAGES[code_page])
    per_language: defaultdict[str, float] = defaultdict(float)
    texts = [w.decode(code_page) for w in words]
    for values in detector.compute_language_confidence_values_in_parallel(texts):
        for value in values:
            if _code(value.language) in serves:
                per_language[_code(value.language)] += value.value
    return max(per_language.values(), default=0.0) / max(1, len(words))


def _code(language: LinguaLanguage) -> str:
    return str(language.iso_code_639_1.name).lower()


@lru_cache(maxsize=1)
def _detector() -> LanguageDetector:
    """Lingua's trigram models of the languages of the Latin code pages (~0.3 s to load, once)."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    codes = sorted({c for code_page in LATIN_CODE_PAGES for c in CODE_PAGES[code_page]})
    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in codes]
    return LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode().build()
