"""The project speaks of the software alone: no development-process words in tracked text.

History that helps a user is a dated fact tied to a version or commit (CHANGELOG.md,
docs/log.md). Words about how the work was organised (numbered work sessions, issue numbers,
who asked for what) and first person say nothing to a user and age badly, so this test greps
every git-tracked text file for them. Failures print ``file:line: text`` for each hit.

The few legitimate uses are allowed by name in :data:`ALLOWED`, each with its reason.
"""

from __future__ import annotations

import ast
import io
import re
import shutil
import subprocess
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Data, not prose: measured records, serialized results, weights, images and archives.
SKIPPED_SUFFIXES = (".json", ".gz", ".pt", ".png", ".npz", ".tar", ".so", ".pdf", ".jpg")
SKIPPED_DIRS = ("tuning_records/",)

# Words about how the work was organised, anywhere in a text file (case-insensitive).
PROCESS_PATTERNS = {
    "numbered work session": re.compile(r"\bsessions? #?[0-9]+|\bsession-[0-9]", re.I),
    "issue number": re.compile(r"\bissues? #?[0-9]+|\bissue-[0-9]+", re.I),
    "work" + "place": re.compile(r"\bwork" + "place", re.I),  # in two parts: not a hit itself
    "the lead": re.compile(r"\bthe lead\b|\blead'?s report\b", re.I),
    "CEO": re.compile(r"\bCEO\b"),
    "stretch of work": re.compile(r"\bstretch(es)? of work\b", re.I),
}

# First person, checked in prose only: Markdown outside code, Python comments and docstrings.
FIRST_PERSON = re.compile(r"\b(?i:we|our|ours|us)\b|\bI\b")

# A work-session tag in a file name, e.g. ``online_zen4_s7.txt``.
SESSION_FILE_NAME = re.compile(r"_s[0-9]+(?=[._-]|$)")


@dataclass(frozen=True)
class Allowed:
    """A legitimate text that looks like a process word; removed from a line before checking."""

    pattern: re.Pattern
    reason: str


ALLOWED = (
    Allowed(
        re.compile(r"apache/tvm(#| issue )[0-9]+", re.I),
        "an upstream TVM issue is a reference for users, not this project's bookkeeping",
    ),
    Allowed(
        re.compile(r"[0-9][0-9.,]*(-[0-9][0-9.,]*)?\s?us\b"),
        "'us' after a number is microseconds (e.g. '12 us', '0.1-0.5 us')",
    ),
    Allowed(re.compile(r"\(us\)|\bus\)|\bin us\b"), "'us' as the unit of a column or value"),
    Allowed(re.compile(r"\bI/O\b"), "input/output"),
    Allowed(
        re.compile(r"\bI/N\b|\bI\+[0-9]*N\b|\bI, I\+"),
        "'I' as the shard index of --shard I/N (tasks I, I+N, ...)",
    ),
)

# Files that name the patterns themselves.
SKIPPED_FILES = {THIS_FILE}


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.why}] {self.text.strip()[:160]}"


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode("utf-8", "replace").split("\0") if name]


def _read_text(path: Path) -> str | None:
    """The file's text, or None for binary or unreadable files."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _without_allowed(text: str) -> str:
    for allowed in ALLOWED:
        text = allowed.pattern.sub(" ", text)
    return text


def _checked_files() -> list[tuple[str, str]]:
    files = []
    for name in _tracked_files():
        if name in SKIPPED_FILES or name.startswith(SKIPPED_DIRS):
            continue
        if name.endswith(SKIPPED_SUFFIXES):
            continue
        text = _read_text(ROOT / name)
        if text is not None:
            files.append((name, text))
    return files


def _markdown_prose(text: str) -> list[tuple[int, str]]:
    """Lines of Markdown outside fenced code, with inline code spans removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, re.sub(r"`[^`]*`", " ", line)))
    return lines


def _python_prose(text: str) -> list[tuple[int, str]]:
    """Comment lines and docstring lines of a Python file."""
    lines: list[tuple[int, str]] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                lines.append((token.start[0], token.string))
    except (tokenize.TokenError, SyntaxError):
        return lines
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return lines
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = getattr(node, "body", [])
        if not body or not isinstance(body[0], ast.Expr):
            continue
        value = body[0].value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for offset, line in enumerate(value.value.splitlines()):
                lines.append((value.lineno + offset, re.sub(r"`[^`]*`", " ", line)))
    return lines


def _prose(name: str, text: str) -> list[tuple[int, str]]:
    if name.endswith(".md"):
        return _markdown_prose(text)
    if name.endswith(".py") or text.startswith("#!/usr/bin/env python"):
        return _python_prose(text)
    return []


def process_word_hits() -> list[Hit]:
    hits = []
    for name, text in _checked_files():
        for number, line in enumerate(text.splitlines(), 1):
            cleaned = _without_allowed(line)
            for why, pattern in PROCESS_PATTERNS.items():
                if pattern.search(cleaned):
                    hits.append(Hit(name, number, line, why))
    return hits


def first_person_hits() -> list[Hit]:
    hits = []
    for name, text in _checked_files():
        for number, line in _prose(name, text):
            if FIRST_PERSON.search(_without_allowed(line)):
                hits.append(Hit(name, number, line, "first person"))
    return hits


def _report(hits: list[Hit]) -> str:
    return f"{len(hits)} hits:\n" + "\n".join(str(hit) for hit in hits)


def test_no_process_words_in_tracked_text():
    hits = process_word_hits()
    assert not hits, _report(hits)


def test_no_first_person_in_prose():
    hits = first_person_hits()
    assert not hits, _report(hits)


def test_no_session_tags_in_file_names():
    tagged = [
        name
        for name in _tracked_files()
        if not name.startswith(SKIPPED_DIRS) and SESSION_FILE_NAME.search(Path(name).name)
    ]
    assert not tagged, f"{len(tagged)} file names tagged by work session:\n" + "\n".join(tagged)


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        # built from parts, so that this file does not hold the phrases it guards against
        (f"Session {4}: measurement groups", True),
        (f"since sessions {6}-8 ran there", True),
        (f"the session-{3} weights", True),
        (f"both are issue-{4} targets", True),
        (f"see issue #{19}", True),
        (f"applied on another CPU (apache/tvm issue {15549})", False),
        ('@pytest.fixture(scope="session")', False),
        ("RPC sessions at a time", False),
    ],
)
def test_process_patterns_tell_bookkeeping_from_legitimate_uses(line, flagged):
    cleaned = _without_allowed(line)
    assert any(p.search(cleaned) for p in PROCESS_PATTERNS.values()) is flagged


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("We measured it twice.", True),
        ("our own networks", True),
        ("I left the search's size alone", True),
        ("Let us compare", True),
        ("the walk took 0.1-0.5 us each", False),
        ("best 12.5 us (27 GFLOP/s)", False),
        ("latency (us) per task", False),
        ("take tasks I, I+N, I+2N with --shard I/N", False),
    ],
)
def test_first_person_check_allows_units_and_shard_indices(line, flagged):
    assert bool(FIRST_PERSON.search(_without_allowed(line))) is flagged
