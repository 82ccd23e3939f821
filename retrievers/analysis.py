"""A Python copy of the Lucene English analyzer that pyserini indexes and searches with.

The bm25s engine must see exactly the terms Lucene sees, or the two BM25 engines rank differently.
Anserini's `DefaultEnglishAnalyzer` is Lucene's `StandardTokenizer` (Unicode UAX #29 word
segmentation), `EnglishPossessiveFilter` (drop a trailing 's), `LowerCaseFilter`, a `StopFilter`
with Lucene's 33 English stop words, and `PorterStemFilter` (Martin Porter's own implementation,
which departs from the published 1980 algorithm: -logi becomes -log, -bli becomes -ble; NLTK's
`PorterStemmer` in its MARTIN_EXTENSIONS mode implements exactly that, while PyStemmer's "porter"
is the 1980 algorithm and stems 0.3% of the catalog's titles differently). Each step is mirrored:

- `words(text)` finds the StandardTokenizer tokens, as (start, end) spans, with a regular
  expression built from the Unicode word-break properties of the `regex` module;
- `analyze(text)` turns them into index terms.

It gives Lucene's terms for every title of the embedded catalog and for mixed-script text
(tests/test_retrievers.py compares them). Known differences are confined to emoji sequences with
unusual modifiers (a keycap with extra marks, a trailing zero-width joiner) and runs of 255 or
more underscores.

Example:
    >>> analyze("The Legend of Zelda: Link's Awakening (3DS)")
    ['legend', 'zelda', 'link', 'awaken', '3d']
    >>> [text[s:e] for text in ["v1.5 a.b.c 1,000 _x_ 👍 日本"] for s, e in words(text)]
    ['v1.5', 'a.b.c', '1,000', '_x_', '👍', '日', '本']
"""

from __future__ import annotations


import regex

from nltk.stem.porter import PorterStemmer

from rec_rl.text import clean_text

_PORTER = PorterStemmer(mode=PorterStemmer.MARTIN_EXTENSIONS)

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (bm25s' own English list is much longer).
ENGLISH_STOP_WORDS = frozenset("""
    a an and are as at be but by for if in into is it no not of on or such that the their then
    there these they this to was will with""".split())

ANALYZER_VERSION = 2  # bump whenever a change here changes any term: it keys cached indexes
MAX_TOKEN_LENGTH = 255  # StandardTokenizer's default: longer words are cut into 255-char pieces

# StandardTokenizer's grammar (StandardTokenizerImpl.jflex) over UAX #29 word-break classes.
# Every class may be followed by Extend/Format/ZWJ characters (rule WB4).
_X = r"[\p{WB=Extend}\p{WB=Format}\p{WB=ZWJ}]*"
_AHLETTER = rf"[\p{{WB=ALetter}}\p{{WB=Hebrew_Letter}}]{_X}"
_HEBREW = rf"\p{{WB=Hebrew_Letter}}{_X}"
_NUMERIC = rf"[\p{{WB=Numeric}}０-９]{_X}"
_KATAKANA = rf"\p{{WB=Katakana}}{_X}"
_EXTENDNUMLET = rf"\p{{WB=ExtendNumLet}}{_X}"
_MIDLETTER = rf"[\p{{WB=MidLetter}}\p{{WB=MidNumLet}}\p{{WB=Single_Quote}}]{_X}"
_MIDNUM = rf"[\p{{WB=MidNum}}\p{{WB=MidNumLet}}\p{{WB=Single_Quote}}]{_X}"
_SINGLE_QUOTE = rf"\p{{WB=Single_Quote}}{_X}"
_DOUBLE_QUOTE = rf"\p{{WB=Double_Quote}}{_X}"

_KATAKANA_RUN = rf"{_KATAKANA}(?:(?:{_EXTENDNUMLET})*{_KATAKANA})*"
_HEBREW_QUOTED = rf"{_HEBREW}(?:{_SINGLE_QUOTE}|{_DOUBLE_QUOTE}{_HEBREW})"
# JFlex takes the longest match; a regex takes the first, so a letter run must not swallow the
# Hebrew letter that starts a quoted Hebrew unit (WB7a-c).
_LETTER_RUN = (
    rf"(?:{_HEBREW_QUOTED}"  # WB7a-c
    rf"|{_NUMERIC}(?:(?:(?:{_EXTENDNUMLET})*|{_MIDNUM}){_NUMERIC})*"  # WB8, WB11-12
    rf"|{_AHLETTER}(?:(?:(?:{_EXTENDNUMLET})*|{_MIDLETTER})(?!{_HEBREW_QUOTED}){_AHLETTER})*"  # WB5-7
    r")+"  # WB9-10: letters and digits join
)
_WORD_BODY = rf"(?:{_KATAKANA_RUN}|{_LETTER_RUN})"
_WORD = rf"(?:{_EXTENDNUMLET})*{_WORD_BODY}(?:(?:{_EXTENDNUMLET})+{_WORD_BODY})*(?:{_EXTENDNUMLET})*"
_X_NO_ZWJ = r"[\p{WB=Extend}\p{WB=Format}]*"
_EMOJI = (r"(?:\p{Regional_Indicator}{2}"  # a flag
          r"|[#*0-9]\uFE0F?\u20E3"  # a keycap
          rf"|[\p{{Extended_Pictographic}}\p{{Emoji_Modifier}}]{_X_NO_ZWJ}(?:\u200D\p{{Extended_Pictographic}}{_X_NO_ZWJ})*)")
_TOKEN = regex.compile(
    rf"{_WORD}"
    rf"|\p{{Line_Break=Complex_Context}}{_X}(?:\p{{Line_Break=Complex_Context}}{_X})*"  # Thai, Lao...
    rf"|\p{{Script=Han}}{_X}|\p{{Script=Hiragana}}{_X}"  # one token per ideograph / kana
    rf"|{_EMOJI}",
    regex.VERSION1)


MAX_QUERY_WORDS = 1024  # Lucene's BooleanQuery clause limit: one clause per distinct query term


def prepare_query(text: str, max_words: int) -> str:
    """A query made safe for any backend: cleaned, and cut after its first `max_words` words."""
    return truncate_words(clean_text(text), max_words)


def check_query_terms(max_words: int) -> int:
    """`max_words` if Lucene can search that many words, else a ValueError naming the setting."""
    if not 1 <= max_words <= MAX_QUERY_WORDS:
        raise ValueError(f"retriever.max_query_terms is {max_words}; it must be between 1 and "
                         f"{MAX_QUERY_WORDS} (Lucene's clause limit)")
    return max_words


def words(text: str, limit: int | None = None) -> list[tuple[int, int]]:
    """StandardTokenizer's tokens of `text` as (start, end) character spans, in order; the first
    `limit` only, if given.

    Lucene scans through a 255-character buffer: a longer word is cut into pieces, each the
    longest token that fits as if the text ended 255 characters after the piece's start.
    """
    spans, position = [], 0
    while limit is None or len(spans) < limit:
        match = _TOKEN.search(text, position)
        if match is None:
            break
        start, end = match.span()
        if end - start <= MAX_TOKEN_LENGTH:
            spans.append((start, end))
        else:
            spans += _pieces(text, start, end)
        position = end
    return spans if limit is None else spans[:limit]


def _pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The tokens Lucene's 255-character buffer cuts the over-long word text[start:end] into.

    Every search is bounded by the buffer, so a 100k-character word costs linear time.
    """
    pieces = []
    while start < end:
        found = _TOKEN.search(text, start, min(start + MAX_TOKEN_LENGTH, end))
        if found is None:
            break
        piece = _TOKEN.match(text, found.start(), min(found.start() + MAX_TOKEN_LENGTH, end))
        pieces.append(piece.span())
        start = piece.end()
    return pieces


def _lowercase(token: str) -> str:
    """Lucene's LowerCaseFilter: per-character simple lowercase (no 'final sigma', 'İ' -> 'i')."""
    if token.isascii():
        return token.lower()
    return "".join(char.lower()[0] for char in token)


_stem_cache: dict[str, str] = {}


def _stem(term: str) -> str:
    """PorterStemFilter, memoised: a catalog has far fewer distinct words than word occurrences."""
    stemmed = _stem_cache.get(term)
    if stemmed is None:
        stemmed = _PORTER.stem(term, to_lowercase=False)  # leaves terms of <= 2 characters alone, as Lucene does
        if len(_stem_cache) < 1_000_000:  # bounded: LLM queries can invent any number of words
            _stem_cache[term] = stemmed
    return stemmed


def analyze_token(token: str) -> str | None:
    """One StandardTokenizer token to its index term, or None for a stop word."""
    if len(token) >= 2 and token[-1] in "sS" and token[-2] in "'\u2019\uff07":
        token = token[:-2]  # EnglishPossessiveFilter
    token = _lowercase(token)
    if token in ENGLISH_STOP_WORDS:
        return None
    return _stem(token)


def analyze(text: str, max_words: int | None = None) -> list[str]:
    """The index terms Lucene's English analyzer makes of `text`, in order, duplicates kept.

    `max_words` keeps only the text's first that-many tokens (stop words count), as
    `truncate_words` does for the Lucene engine.
    """
    spans = words(text, max_words)
    terms = (analyze_token(text[start:end]) for start, end in spans)
    return [term for term in terms if term]


def truncate_words(text: str, max_words: int) -> str:
    """`text` cut right after its `max_words`-th token, so Lucene sees the same words `analyze` keeps."""
    if max_words <= 0:
        return ""
    spans = words(text, max_words + 1)
    return text if len(spans) <= max_words else text[:spans[max_words - 1][1]]
