"""Names people type (display names, station, specialty and exam-day names, examiners in marks, requesters,
reviewers, candidates' names): one rule, for the HTTP API and the command line alike.

A name is one line of visible text. Control characters (tab, CR, LF, ESC, C1 controls), Unicode format
characters (bidirectional overrides such as U+202E, zero-width joiners and spaces) and line or paragraph
separators are refused with the field named: they let a name start a spreadsheet formula after a tab, split
a CSV or log line, or show one name while holding another. Free text (reasons, notes) keeps newlines.
"""

from __future__ import annotations

import unicodedata

_REFUSED = {"Cc": "a control character", "Cf": "an invisible format character", "Zl": "a line separator",
            "Zp": "a paragraph separator", "Cs": "an unpaired surrogate"}


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a name, or None."""
    for i, ch in enumerate(value):
        what = _REFUSED.get(unicodedata.category(ch))
        if what is not None:
            return f"{what} (U+{ord(ch):04X}) at character {i + 1}: a name is one line of visible text"
    return None
