"""Lucene's Porter stemmer (`org.apache.lucene.analysis.en.PorterStemmer`), ported line by line.

Lucene stems with Martin Porter's own implementation, which departs from the published 1980
algorithm that Snowball's (and PyStemmer's) "porter" follows: -logi becomes -log, -bli becomes
-ble, and any doubled consonant left by -ed/-ing is undoubled. PyStemmer's "porter" therefore
stems 'anthology' to 'anthologi' and 'revved' to 'revv' where Lucene has 'antholog' and 'rev';
about 0.3% of catalog titles contain such words, so the bm25s engine uses this port instead.

Example:
    >>> [stem(word) for word in ["anthology", "revved", "incredibly", "playstation", "games", "is"]]
    ['antholog', 'rev', 'incred', 'playstat', 'game', 'is']
"""

from __future__ import annotations

_VOWELS = frozenset("aeiou")


class _Stemmer:
    """One word's stemming state: the buffer `b`, its end `k` and the stem end `j`, as in Lucene."""

    def __init__(self, word: str):
        self.b = list(word)
        self.k = len(word) - 1
        self.j = 0

    def cons(self, i: int) -> bool:
        """Whether b[i] is a consonant ('y' is one at the start or after a vowel)."""
        char = self.b[i]
        if char in _VOWELS:
            return False
        if char == "y":
            return True if i == 0 else not self.cons(i - 1)
        return True

    def m(self) -> int:
        """The number of vowel-consonant sequences in b[0..j]."""
        n, i, j = 0, 0, self.j
        while True:
            if i > j:
                return n
            if not self.cons(i):
                break
            i += 1
        i += 1
        while True:
            while True:
                if i > j:
                    return n
                if self.cons(i):
                    break
                i += 1
            i += 1
            n += 1
            while True:
                if i > j:
                    return n
                if not self.cons(i):
                    break
                i += 1
            i += 1

    def vowel_in_stem(self) -> bool:
        return any(not self.cons(i) for i in range(self.j + 1))

    def double_consonant(self, j: int) -> bool:
        return j >= 1 and self.b[j] == self.b[j - 1] and self.cons(j)

    def cvc(self, i: int) -> bool:
        """Whether b[i-2..i] is consonant-vowel-consonant and b[i] is not w, x or y."""
        if i < 2 or not self.cons(i) or self.cons(i - 1) or not self.cons(i - 2):
            return False
        return self.b[i] not in "wxy"

    def ends(self, suffix: str) -> bool:
        """Whether b[0..k] ends with `suffix`; if so, j marks the end of the stem before it."""
        start = self.k - len(suffix) + 1
        if start < 0 or "".join(self.b[start:self.k + 1]) != suffix:
            return False
        self.j = self.k - len(suffix)
        return True

    def set_to(self, replacement: str) -> None:
        """Replace b[j+1..k] with `replacement`."""
        del self.b[self.j + 1:]
        self.b.extend(replacement)
        self.k = self.j + len(replacement)

    def replace(self, replacement: str) -> None:
        if self.m() > 0:
            self.set_to(replacement)

    def step1(self) -> None:
        """Plurals and -ed or -ing."""
        b = self.b
        if b[self.k] == "s":
            if self.ends("sses"):
                self.k -= 2
            elif self.ends("ies"):
                self.set_to("i")
            elif b[self.k - 1] != "s":
                self.k -= 1
        if self.ends("eed"):
            if self.m() > 0:
                self.k -= 1
        elif (self.ends("ed") or self.ends("ing")) and self.vowel_in_stem():
            self.k = self.j
            if self.ends("at"):
                self.set_to("ate")
            elif self.ends("bl"):
                self.set_to("ble")
            elif self.ends("iz"):
                self.set_to("ize")
            elif self.double_consonant(self.k):
                self.k -= 1
                if self.b[self.k + 1] in "lsz":
                    self.k += 1
            elif self.m() == 1 and self.cvc(self.k):
                self.set_to("e")

    def step2(self) -> None:
        """Terminal y to i when the stem has another vowel."""
        if self.ends("y") and self.vowel_in_stem():
            self.b[self.k] = "i"

    _STEP3 = {
        "a": (("ational", "ate"), ("tional", "tion")),
        "c": (("enci", "ence"), ("anci", "ance")),
        "e": (("izer", "ize"),),
        "l": (("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous")),
        "o": (("ization", "ize"), ("ation", "ate"), ("ator", "ate")),
        "s": (("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous")),
        "t": (("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")),
        "g": (("logi", "log"),),
    }
    _STEP4 = {
        "e": (("icate", "ic"), ("ative", ""), ("alize", "al")),
        "i": (("iciti", "ic"),),
        "l": (("ical", "ic"), ("ful", "")),
        "s": (("ness", ""),),
    }
    _STEP5 = {
        "a": ("al",), "c": ("ance", "ence"), "e": ("er",), "i": ("ic",), "l": ("able", "ible"),
        "n": ("ant", "ement", "ment", "ent"), "o": ("ion", "ou"), "s": ("ism",), "t": ("ate", "iti"),
        "u": ("ous",), "v": ("ive",), "z": ("ize",),
    }

    def suffix_rules(self, rules: tuple[tuple[str, str], ...]) -> None:
        """The first rule whose suffix matches is applied if the stem's m() > 0, and stops the step."""
        for suffix, replacement in rules:
            if self.ends(suffix):
                self.replace(replacement)
                return

    def step3(self) -> None:
        """Double suffixes to single ones (-ization to -ize...)."""
        if self.k == 0:
            return
        self.suffix_rules(self._STEP3.get(self.b[self.k - 1], ()))

    def step4(self) -> None:
        """-ic-, -full, -ness..."""
        self.suffix_rules(self._STEP4.get(self.b[self.k], ()))

    def step5(self) -> None:
        """-ant, -ence... in context <c>vcvc<v>."""
        if self.k == 0:
            return
        for suffix in self._STEP5.get(self.b[self.k - 1], ()):
            if self.ends(suffix):
                if suffix == "ion" and not (self.j >= 0 and self.b[self.j] in "st"):
                    continue  # -ion goes only after s or t
                if self.m() > 1:
                    self.k = self.j
                return

    def step6(self) -> None:
        """A final -e if m() > 1, and -ll to -l."""
        self.j = self.k
        if self.b[self.k] == "e":
            a = self.m()
            if a > 1 or (a == 1 and not self.cvc(self.k - 1)):
                self.k -= 1
        if self.b[self.k] == "l" and self.double_consonant(self.k) and self.m() > 1:
            self.k -= 1

    def stem(self) -> str:
        for step in (self.step1, self.step2, self.step3, self.step4, self.step5, self.step6):
            step()
        return "".join(self.b[:self.k + 1])


def _utf16_units(word: str) -> str:
    """`word` with each character beyond U+FFFF split into its two surrogates, as a Java char[] holds it."""
    units = word.encode("utf-16-le", "surrogatepass")
    return "".join(chr(int.from_bytes(units[i:i + 2], "little")) for i in range(0, len(units), 2))


def stem(word: str) -> str:
    """`word` stemmed as Lucene's PorterStemFilter does (words of up to two characters unchanged)."""
    astral = not word.isascii() and max(word) > "\uffff"
    if astral:  # Lucene stems Java chars (UTF-16 units): an emoji counts as two consonants
        word = _utf16_units(word)
    stemmed = word if len(word) <= 2 else _Stemmer(word).stem()
    return stemmed.encode("utf-16-le", "surrogatepass").decode("utf-16-le") if astral else stemmed
