"""The docs match the code: every file the code and docs cite exists, the design document's
fragment table lists exactly the keys the schema declares, and it names every counter."""

import re
from pathlib import Path

from distrl.runtime.fragment import SCHEMA

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    *ROOT.glob("*.md"),
    *ROOT.glob("docs/*.md"),
    *ROOT.glob("distrl/**/*.py"),
    *ROOT.glob("scripts/*.py"),
    *ROOT.glob("configs/**/*.yaml"),
]
# A cited file: a path with a folder and an extension, like docs/design.md or runtime/flows/replay.py.
CITATION = re.compile(r"(?<![\w./-])((?:[\w-]+/)+[\w.-]+\.(?:md|py|yaml))\b")
# A top-level document cited by name alone: README.md, BENCHMARKS.md.
TOP_LEVEL = re.compile(r"(?<![\w./-])([A-Z][A-Z_]+\.md)\b")
# Folders a citation may be relative to: the repository, the package, the docs.
BASES = [ROOT, ROOT / "distrl", ROOT / "docs"]


def test_every_cited_file_exists():
    missing = []
    for source in SOURCES:
        text = source.read_text()
        for cited in CITATION.findall(text) + TOP_LEVEL.findall(text):
            if cited.startswith(("runs/", "OUT/", "/")) or "<" in cited or "NAME" in cited:
                continue  # a run's output or a pattern, not a file of the repository
            if not any((base / cited).exists() for base in [source.parent, *BASES]):
                missing.append(f"{source.relative_to(ROOT)}: {cited}")
    assert not missing, "cited files that do not exist:\n" + "\n".join(missing)


def test_the_design_document_lists_every_fragment_key():
    text = (ROOT / "docs" / "design.md").read_text()
    table = text.split("## The fragment", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    assert keys == list(SCHEMA), keys


def test_the_design_document_names_every_counter():
    """A counter is a field of Counters plus its doc: the report and the contract follow from
    the field, the doc is this section."""
    from distrl.runtime.tally import CONTRACT_FIELDS, COUNTER_NAMES

    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## Output of a run", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(\w+)`", section))
    assert set(COUNTER_NAMES) <= set(CONTRACT_FIELDS)
    assert not set(CONTRACT_FIELDS) - named, sorted(set(CONTRACT_FIELDS) - named)
