"""Errors that edgekit reports to its user."""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """Bad input from the user: the CLI prints the message as one line and exits with code 2."""


def first_line(e: BaseException, limit: int = 200, empty: str | None = None) -> str:
    """The first non-blank line of ``e``'s message (at most ``limit`` characters), or ``empty``
    (default: the exception's type name) when the message is blank."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else (empty or type(e).__name__)


def run_main(fn: Callable[[], object]) -> int:
    """Exit code of a device-side entry point: 0 when ``fn()`` returns, 2 with ``error: MESSAGE``
    on stderr when it raises UserError (other exceptions propagate: exit 1)."""
    try:
        fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
