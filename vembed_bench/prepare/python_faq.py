"""Build the embedded default dataset: the CPython FAQ as a BEIR-layout retrieval task.

Why this dataset: the offline demo needs a real, English, question-to-answer task
that can ship inside the repository under a licence that allows redistribution.
The Python FAQ (PSF licence) is exactly that: every FAQ entry is a natural
question (the section heading) with its own answer (the section body).

Input: the FAQ reST sources of the Debian package ``python3.11-doc``
(``/usr/share/doc/python3.11/html/_sources/faq/*.rst.txt``). Output, in BEIR
layout: ``corpus.jsonl`` (every answer), ``queries.jsonl`` (every question) and
``qrels/{train,test}.tsv``, the questions split about 50/50 per FAQ file so that
a training demo can fine-tune on train questions and evaluate on held-out test
questions against the full corpus.

The reST is cleaned to the plain text a reader sees on docs.python.org: roles
are reduced to their displayed text (``:func:`foo``` -> ``foo()``, as Sphinx
renders it; ``:ref:`` labels are resolved to their titles via the package's
``objects.inv``), links to their text, comments/index/setup directives dropped,
code kept as text. The output is deterministic: re-running it over the same
package reproduces the committed files byte for byte.

Run: ``python -m vembed_bench.prepare.python_faq --src DIR --out DIR [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SRC = Path("/usr/share/doc/python3.11/html/_sources/faq")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "datasets" / "python_faq"
MAX_ANSWER_CHARS = 2000

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")  # a line of one repeated punctuation char
_EXPLICIT = re.compile(r"^(\s*)\.\.(?:\s+(.*))?$")  # ".. directive::", ".. _target:", ".. comment"
_DIRECTIVE = re.compile(r"^([\w:-]+)::\s*(.*)$")
_OPTION = re.compile(r"^\s*:[\w-]+:(\s|$)")
_BULLET = re.compile(r"^(\s*)[*+-]\s+")
_ENUMERATOR = re.compile(r"^\s*(?:\d+|[a-zA-Z#])[.)]\s+")

# Directives whose content a reader never sees (or that only drive the build).
_DROP = {"index", "only", "contents", "highlight", "toctree", "testsetup", "testcleanup"}
# Directives whose content is code, shown verbatim.
_CODE = {"code-block", "code", "sourcecode", "doctest", "testcode", "testoutput"}
# Admonitions: the content is prose, introduced by the label Sphinx renders.
_ADMONITION = {
    "note": "Note:",
    "warning": "Warning:",
    "seealso": "See also:",
    "versionadded": "New in version {}:",
    "versionchanged": "Changed in version {}:",
    "deprecated": "Deprecated since version {}:",
}
# Roles Sphinx renders with "()" appended (``add_function_parentheses``).
_CALLABLE_ROLES = {"func", "meth", "c:func", "c:macro", "py:func", "py:meth"}


@dataclass(frozen=True)
class Entry:
    """One FAQ question with its cleaned answer, in source order."""

    topic: str  # FAQ file stem, e.g. "programming"
    title: str  # the FAQ file's document title, e.g. "Programming FAQ"
    question: str
    answer: str
    truncated: bool


# --------------------------------------------------------------------------- inline markup


def load_label_titles(inventory: Path) -> dict[str, str]:
    """``:ref:`` label -> displayed title, from a Sphinx ``objects.inv`` (v2) file.

    Sphinx renders ``:ref:`label``` as the referenced section's title; the
    inventory shipped with the HTML docs records exactly those titles.
    """
    raw = inventory.read_bytes()
    header_end = 0
    for _ in range(4):  # four plain-text header lines, then zlib data
        header_end = raw.index(b"\n", header_end) + 1
    titles: dict[str, str] = {}
    for line in zlib.decompress(raw[header_end:]).decode("utf-8").splitlines():
        m = re.match(r"(.+?)\s+std:label\s+-?\d+\s+\S+\s+(.*)", line)
        if m:
            titles[m.group(1).lower()] = m.group(2) if m.group(2) != "-" else m.group(1)
    return titles


def _role_text(role: str, body: str, labels: dict[str, str]) -> str:
    """The text Sphinx displays for ``:role:`body```."""
    body = " ".join(body.split())
    explicit = re.fullmatch(r"(.*?)\s*<([^<>]+)>", body, flags=re.S)
    if explicit and explicit.group(1):
        return explicit.group(1)
    body = body.lstrip("!")
    if role in ("pep", "rfc"):
        return f"{role.upper()} {body}"
    if role == "ref":
        return labels.get(body.lower(), body)
    if role in ("file", "samp"):
        return re.sub(r"\{([^{}]*)\}", r"\1", body)
    if role == "menuselection":
        return body.replace("-->", ">")
    if body.startswith("~"):
        body = body[1:].rsplit(".", 1)[-1]
    if role in _CALLABLE_ROLES and not body.endswith(")"):
        body += "()"
    return body


def clean_inline(text: str, labels: dict[str, str]) -> str:
    """Strip reST inline markup from one paragraph, keeping the displayed text."""
    kept: list[str] = []

    def keep(value: str) -> str:
        kept.append(value)
        return f"\x00{len(kept) - 1}\x00"

    text = " ".join(text.split())
    text = re.sub(r"``(.+?)``(?!`)", lambda m: keep(m.group(1)), text)  # inline literals
    text = re.sub(r"\\ ", "", text)  # escaped space: joins words, shows nothing
    text = re.sub(r"\\(.)", lambda m: keep(m.group(1)), text)  # escaped characters
    text = re.sub(
        r":(?P<role>[A-Za-z][\w.+-]*(?::[\w.+-]+)?):`(?P<body>[^`]+)`",
        lambda m: keep(_role_text(m.group("role"), m.group("body"), labels)),
        text,
    )
    text = re.sub(  # hyperlinks: `text <url>`_ -> text
        r"`(?P<text>[^`<]*?)\s*<(?P<url>[^`>]+)>`_{0,2}",
        lambda m: keep(m.group("text") or m.group("url")),
        text,
    )
    text = re.sub(r"`([^`]+)`_{0,2}", lambda m: keep(m.group(1)), text)  # refs, default role
    text = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"\1", text)  # strong
    text = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"\1", text)  # emphasis
    while "\x00" in text:
        text = re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)
    return text


# --------------------------------------------------------------------------- block structure


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _paragraph_indent(para: list[str]) -> int:
    """Indentation a literal block must exceed to belong to this paragraph."""
    if len(para) > 1:
        return _indent(para[-1])
    marker = _BULLET.match(para[0]) or _ENUMERATOR.match(para[0])
    return marker.end() if marker else _indent(para[0])


def _finish_paragraph(para: list[str], labels: dict[str, str]) -> str:
    lines = [_BULLET.sub(r"\1- ", line) for line in para]
    text = " ".join(" ".join(lines).split())
    if text.endswith("::"):  # "text::" shows "text:"; "text ::" and "::" show nothing
        text = text[:-1] if len(text) > 2 and not text[-3].isspace() else text[:-2].rstrip()
    return clean_inline(text, labels)


def _explicit_block(head: str, content: list[str], labels: dict[str, str]) -> list[str]:
    """Render an explicit markup block (directive, comment or hyperlink target)."""
    m = _DIRECTIVE.match(head)
    if not m:  # comment (".. XXX ...") or target (".. _label:")
        return []
    name, argument = m.group(1), m.group(2).strip()
    while content and _OPTION.match(content[0]):
        content = content[1:]
    if name in _DROP:
        return []
    if name in _CODE:
        return ["\n".join(content)]
    if name in _ADMONITION:
        label = _ADMONITION[name]
        if "{}" in label:  # the argument is a version number, not text
            version, _, argument = argument.partition(" ")
            label = label.format(version)
        return [label, *render_block([argument, *content] if argument else content, labels)]
    raise ValueError(f"unsupported reST directive '.. {name}::'; teach python_faq.py about it")


def render_block(lines: list[str], labels: dict[str, str]) -> list[str]:
    """Render reST body lines to plain-text pieces (prose cleaned, code verbatim)."""
    pieces: list[str] = []
    para: list[str] = []
    i, n = 0, len(lines)

    def flush() -> None:
        if para:
            pieces.append(_finish_paragraph(para, labels))
            para.clear()

    while i < n:
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
            continue
        explicit = _EXPLICIT.match(line)
        if explicit and not para:
            indent, j = len(explicit.group(1)), i + 1
            while j < n and (not lines[j].strip() or _indent(lines[j]) > indent):
                j += 1
            pieces += _explicit_block(explicit.group(2) or "", lines[i + 1 : j], labels)
            i = j
            continue
        if line.lstrip().startswith(">>>") and not para:  # doctest block: up to a blank line
            j = i
            while j < n and lines[j].strip():
                j += 1
            pieces.append("\n".join(lines[i:j]))
            i = j
            continue
        para.append(line)
        i += 1
        if line.rstrip().endswith("::") and (i >= n or not lines[i].strip()):
            indent = _paragraph_indent(para)
            flush()
            j = i
            while j < n and (not lines[j].strip() or _indent(lines[j]) > indent):
                j += 1
            pieces.append("\n".join(lines[i:j]))  # literal block: verbatim
            i = j
    flush()
    # Sphinx hides doctest flags ("# doctest: +SKIP") and <BLANKLINE> markers.
    pieces = [re.sub(r"[ \t]*#\s*doctest:[^\n]*|<BLANKLINE>", "", p) for p in pieces]
    return [p for p in pieces if p.strip()]


# --------------------------------------------------------------------------- sections


def _sections(lines: list[str]) -> list[tuple[int, str, int, int]]:
    """Section titles as ``(level, title, body_start, title_start)`` in source order.

    Levels follow reST: each new adornment style (character, with or without an
    overline) gets the next level in order of first appearance within the file.
    """
    styles: list[tuple[str, bool]] = []
    found = []
    i = 0
    while i < len(lines) - 1:
        over = _ADORNMENT.match(lines[i])
        if (
            over
            and i + 2 < len(lines)
            and lines[i + 1].strip()
            and lines[i + 2].rstrip() == lines[i].rstrip()
        ):
            style, title, start, body = (over.group(1), True), lines[i + 1].strip(), i, i + 3
        elif (
            lines[i].strip()
            and not lines[i][0].isspace()
            and not _ADORNMENT.match(lines[i])
            and (under := _ADORNMENT.match(lines[i + 1]))
            and len(lines[i + 1].rstrip()) >= len(lines[i].rstrip())
        ):
            style, title, start, body = (under.group(1), False), lines[i].strip(), i, i + 2
        else:
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        found.append((styles.index(style), title, body, start))
        i = body
    return found


def truncate(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    """Cut ``text`` to at most ``limit`` chars, at a sentence end if one is in the second half."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    ends = [m.end() for m in re.finditer(r"[.!?][\"')\]]?(?=\s)", head)]
    if ends and ends[-1] >= limit // 2:
        return head[: ends[-1]]
    return head[: head.rstrip().rfind(" ")].rstrip()


def parse_faq_file(path: Path, labels: dict[str, str]) -> list[Entry]:
    """Every leaf section below the document title is one FAQ entry.

    Leaf = no subsection follows before the next section of the same or higher
    level; its body runs up to that next section. Entries whose cleaned answer is
    empty (e.g. "General GUI Questions", a bare category) are skipped.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    sections = _sections(lines)
    topic = path.name.split(".")[0]
    doc_title = next((clean_inline(t, labels) for lvl, t, _, _ in sections if lvl == 0), topic)
    entries = []
    for k, (level, title, body_start, _) in enumerate(sections):
        nxt = sections[k + 1] if k + 1 < len(sections) else None
        if level == 0 or (nxt is not None and nxt[0] > level):
            continue  # the document title, or a category with subsections
        body = lines[body_start : nxt[3] if nxt else len(lines)]
        answer = " ".join(" ".join(render_block(body, labels)).split())
        if not answer:
            continue
        short = truncate(answer)
        question = clean_inline(title, labels)
        entries.append(Entry(topic, doc_title, question, short, short != answer))
    return entries


# --------------------------------------------------------------------------- build


def _split(strata: dict[str, list[str]], seed: int) -> tuple[set[str], set[str]]:
    """Seeded ~50/50 split of query ids within each stratum (FAQ file).

    Odd-sized strata give their extra query alternately to train and test, so
    the overall split stays balanced.
    """
    rng = random.Random(seed)
    train: set[str] = set()
    test: set[str] = set()
    extra_to_train = True
    for topic in sorted(strata):
        ids = sorted(strata[topic])
        rng.shuffle(ids)
        n_train = len(ids) // 2
        if len(ids) % 2:
            n_train += int(extra_to_train)
            extra_to_train = not extra_to_train
        train.update(ids[:n_train])
        test.update(ids[n_train:])
    return train, test


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_qrels(path: Path, qrels: dict[str, list[str]], ids: set[str]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid in sorted(ids):
            for did in sorted(qrels[qid]):
                f.write(f"{qid}\t{did}\t1\n")


def build(src_dir: Path, out_dir: Path, seed: int = 0) -> dict:
    """Build the dataset from the FAQ sources in ``src_dir`` into ``out_dir``.

    Writes ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{train,test}.tsv``
    (other files in ``out_dir``, such as README.md and LICENSE, are left alone)
    and returns summary counts. Document ids are ``<file>-<nnn>`` in source
    order; query ids are ``q-<file>-<nnn>``. Identical questions from different
    files (e.g. "What is Python?") become one query with every such answer
    relevant, so the same question can never land in both train and test.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    files = sorted(p for p in src_dir.glob("*.rst.txt") if p.name != "index.rst.txt")
    if not files:
        raise FileNotFoundError(f"no FAQ *.rst.txt files in {src_dir}")
    inventory = src_dir.parent.parent / "objects.inv"  # html/_sources/faq -> html/objects.inv
    labels = load_label_titles(inventory) if inventory.is_file() else {}

    corpus: list[dict[str, object]] = []
    queries: list[dict[str, str]] = []
    qrels: dict[str, list[str]] = {}
    by_question: dict[str, str] = {}  # normalised question -> query id
    strata: dict[str, list[str]] = {}
    truncated = 0
    for path in files:
        for number, entry in enumerate(parse_faq_file(path, labels), start=1):
            doc_id = f"{entry.topic}-{number:03d}"
            # The page title is the same for every answer of a page, so it would only add
            # noise to the text that BEIR-style encoders see: keep it as metadata.
            corpus.append({"_id": doc_id, "title": "", "text": entry.answer,
                           "metadata": {"page": entry.title}})
            truncated += entry.truncated
            key = entry.question.casefold()
            if key not in by_question:
                by_question[key] = f"q-{doc_id}"
                queries.append({"_id": f"q-{doc_id}", "text": entry.question})
                strata.setdefault(entry.topic, []).append(f"q-{doc_id}")
            qrels.setdefault(by_question[key], []).append(doc_id)

    train, test = _split(strata, seed)
    (out_dir / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(out_dir / "corpus.jsonl", sorted(corpus, key=lambda r: r["_id"]))
    _write_jsonl(out_dir / "queries.jsonl", sorted(queries, key=lambda r: r["_id"]))
    _write_qrels(out_dir / "qrels" / "train.tsv", qrels, train)
    _write_qrels(out_dir / "qrels" / "test.tsv", qrels, test)

    lengths = [len(r["text"]) for r in corpus]
    return {
        "queries": len(queries),
        "train_queries": len(train),
        "test_queries": len(test),
        "corpus": len(corpus),
        "merged_duplicate_questions": len(corpus) - len(queries),
        "truncated_answers": truncated,
        "mean_answer_chars": round(sum(lengths) / len(lengths), 1),
        "per_file": {topic: len(ids) for topic, ids in sorted(strata.items())},
        "resolved_ref_labels": bool(labels),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="FAQ reST sources dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output dataset dir")
    parser.add_argument("--seed", type=int, default=0, help="train/test split seed")
    args = parser.parse_args(argv)
    print(json.dumps(build(args.src, args.out, args.seed), indent=2))


if __name__ == "__main__":
    main()
