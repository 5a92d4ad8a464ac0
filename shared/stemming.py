"""English stemming: Martin Porter's algorithm, as SQLite's FTS5 ``porter`` tokenizer applies it.

Both stores reduce a word to its stem before matching ("running" and "runs" are found by
"run"): SQLite's ``porter`` tokenizer, and Cosmos DB's full-text index for the ``en-US``
language (the local server runs the npm ``stemmer`` package, the same algorithm). Parley
stems too, where it matches words itself (titles on SQLite, the words a snippet shows), so
this is the one Python copy of the algorithm. It follows the reference C implementation's
rules, as FTS5 and ``stemmer`` do (``bli`` -> ``ble`` and ``logi`` -> ``log`` in step 2,
where Snowball's ``porter`` differs), and, like FTS5, works on a word's UTF-8 bytes: a byte
above 127 is a consonant, a word under 3 or over 64 bytes is left as it is. Only the English
suffixes are ever touched, so a word of another script comes back unchanged.
"""

from __future__ import annotations

import re

# FTS5 (fts5_porter.c) leaves shorter and longer tokens as they are.
MIN_BYTES, MAX_BYTES = 3, 64
# A UTF-8 byte above 127 stands as one private-use character: never a vowel, never a case.
_HIGH = 0xE000

_STEP2 = {
    "ational": "ate",
    "tional": "tion",
    "enci": "ence",
    "anci": "ance",
    "izer": "ize",
    "bli": "ble",
    "alli": "al",
    "entli": "ent",
    "eli": "e",
    "ousli": "ous",
    "ization": "ize",
    "ation": "ate",
    "ator": "ate",
    "alism": "al",
    "iveness": "ive",
    "fulness": "ful",
    "ousness": "ous",
    "aliti": "al",
    "iviti": "ive",
    "biliti": "ble",
    "logi": "log",
}
_STEP3 = {
    "icate": "ic",
    "ative": "",
    "alize": "al",
    "iciti": "ic",
    "ical": "ic",
    "ful": "",
    "ness": "",
}
_C = "[^aeiou]"
_V = "[aeiouy]"
_CS = f"({_C}[^aeiouy]*)"
_VS = f"({_V}[aeiou]*)"
_GT0 = re.compile(f"^{_CS}?{_VS}{_CS}")
_EQ1 = re.compile(f"^{_CS}?{_VS}{_CS}{_VS}?$")
_GT1 = re.compile(f"^{_CS}?({_VS}{_CS}){{2,}}")
_VOWEL_IN_STEM = re.compile(f"^{_CS}?{_V}")
_CVC = re.compile(f"^{_CS}{_V}[^aeiouwxy]$")
_LL = re.compile(r"ll$")
_E = re.compile(r"^(.+?)e$")
_Y = re.compile(r"^(.+?)y$")
_ION = re.compile(r"^(.+?(s|t))(ion)$")
_ED_ING = re.compile(r"^(.+?)(ed|ing)$")
_AT_BL_IZ = re.compile(r"(at|bl|iz)$")
_EED = re.compile(r"^(.+?)eed$")
_S = re.compile(r"^.+?[^s]s$")
_SSES_IES = re.compile(r"^.+?(ss|i)es$")
_DOUBLE = re.compile(r"([^aeiouylsz])\1$")
_STEP2_RE = re.compile("^(.+?)(" + "|".join(_STEP2) + ")$")
_STEP3_RE = re.compile("^(.+?)(" + "|".join(_STEP3) + ")$")
_STEP4_RE = re.compile(
    r"^(.+?)(al|ance|ence|er|ic|able|ible|ant|ement|ment|ent|ou|ism|ate|iti|ous|ive|ize)$"
)


def stem(word: str) -> str:
    """The stem of one lower-case word."""
    raw = word.encode()
    if not MIN_BYTES <= len(raw) <= MAX_BYTES:
        return word
    result = _porter("".join(chr(b) if b < 128 else chr(_HIGH + b) for b in raw))
    try:
        return bytes(ord(c) - _HIGH if ord(c) >= _HIGH else ord(c) for c in result).decode()
    except UnicodeDecodeError:  # a step split a character's bytes (never for real words)
        return word


def _porter(word: str) -> str:
    """The reference algorithm, step by step (the order and tests of the npm ``stemmer``)."""
    result = word
    initial_y = result.startswith("y")
    if initial_y:
        result = "Y" + result[1:]
    # Step 1a.
    if _SSES_IES.match(result):
        result = result[:-2]
    elif _S.match(result):
        result = result[:-1]
    # Step 1b.
    if m := _EED.match(result):
        if _GT0.match(m[1]):
            result = result[:-1]
    elif (m := _ED_ING.match(result)) and _VOWEL_IN_STEM.match(m[1]):
        result = m[1]
        if _AT_BL_IZ.search(result):
            result += "e"
        elif _DOUBLE.search(result):
            result = result[:-1]
        elif _CVC.match(result):
            result += "e"
    # Step 1c.
    if (m := _Y.match(result)) and _VOWEL_IN_STEM.match(m[1]):
        result = m[1] + "i"
    # Steps 2 and 3.
    if (m := _STEP2_RE.match(result)) and _GT0.match(m[1]):
        result = m[1] + _STEP2[m[2]]
    if (m := _STEP3_RE.match(result)) and _GT0.match(m[1]):
        result = m[1] + _STEP3[m[2]]
    # Step 4.
    if m := _STEP4_RE.match(result):
        if _GT1.match(m[1]):
            result = m[1]
    elif (m := _ION.match(result)) and _GT1.match(m[1]):
        result = m[1]
    # Step 5.
    if (m := _E.match(result)) and (
        _GT1.match(m[1]) or (_EQ1.match(m[1]) and not _CVC.match(m[1]))
    ):
        result = m[1]
    if _LL.search(result) and _GT1.match(result):
        result = result[:-1]
    if initial_y:
        result = "y" + result[1:]
    return result
