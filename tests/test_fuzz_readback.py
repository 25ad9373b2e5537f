"""Fuzzing every file simeval reads back: episodes.jsonl, results.json, baselines, run.json and
simeval-run.json, through ``compare``, ``check`` and ``run --resume``.

Mutations: truncation, type swaps, missing keys, extra keys, NaN/inf/huge numbers, non-UTF-8 bytes,
duplicate lines and keys, deep nesting. The contract: exit 0/1 with the right figures, or 2 with one
line ``simeval: error: ...`` naming the file; never a traceback. "The right figures" are worked out
here from the mutation, not from simeval: which records survive a cut, which fields a record must
have, and, for ``check``, that every figure printed is an integer the two files hold at that cell.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simeval.check import baseline_from_results
from simeval.cli import main
from tests.test_readback import TINY, tiny_suite, write_run

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MUTATIONS = ("truncate", "swap", "drop", "extra", "number", "bytes", "dupkey", "nest")
TOKENS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", str(10**30), "9" * 5000)
# what each record field holds, as docs/README promise it: the test's own copy of the format
KINDS = {"id": "str", "task": "str", "robot": "str", "family": "str", "perturbation": "str", "dimension": "str",
         "instruction": "str", "level": "int", "seed": "int", "steps": "int", "success": "bool", "wall_s": "num",
         "params": "dict", "error": "str?", "video": "str?", "named_object": "str?", "first_moved": "str?",
         "grounded": "bool?"}
REQUIRED = ("id", "success", "steps")
SWAPS = (7, 1.5, "8", True, None, [1], {"v": 1})


def _fits(kind: str, value: Any) -> bool:
    if value is None:
        return kind.endswith("?")
    base = kind.rstrip("?")
    return {"str": isinstance(value, str), "bool": isinstance(value, bool), "dict": isinstance(value, dict),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "num": isinstance(value, (int, float)) and not isinstance(value, bool)}[base]


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        out += [(*prefix, key), *_paths(value, (*prefix, key))]
    return out


def _parent(tree: Any, path: tuple) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def _mutate_tree(tree: Any, data: st.DataObject, kind: str,
                 fits: Callable[[tuple, Any], bool] = lambda path, value: False) -> tuple[str, tuple | None, str]:
    """JSON text of ``tree`` with one ``kind`` of mutation, the path it hit and the token used; a
    swap puts a value of another type, and not one that ``fits`` the path."""
    tree = copy.deepcopy(tree)
    paths = _paths(tree)
    path = data.draw(st.sampled_from(paths)) if paths else None
    token = ""
    if kind == "swap":
        value = _parent(tree, path)[path[-1]]
        swaps = [s for s in SWAPS if _kind(s) != _kind(value) and not fits(path, s)]
        _parent(tree, path)[path[-1]] = data.draw(st.sampled_from(swaps))
    elif kind == "drop":
        del _parent(tree, path)[path[-1]]
    elif kind == "extra":
        objects = [p for p in [(), *paths] if isinstance(_parent(tree, (*p, 0)) if p else tree, dict)]
        where = data.draw(st.sampled_from(objects))
        (_parent(tree, (*where, 0)) if where else tree)["zz_extra"] = data.draw(st.sampled_from(SWAPS))
    elif kind in ("number", "nest"):
        if kind == "number":
            numeric = [p for p in paths if _kind(_parent(tree, p)[p[-1]]) in ("int", "float")] or paths
            path = data.draw(st.sampled_from(numeric))
            token = data.draw(st.sampled_from(TOKENS))
        else:
            depth = data.draw(st.sampled_from([30, 100_000]))
            value = _parent(tree, path)[path[-1]]
            token = ('{"a": ' * depth + "{}" + "}" * depth) if isinstance(value, dict) else "[" * depth + "]" * depth
        _parent(tree, path)[path[-1]] = "@@X@@"
        return json.dumps(tree).replace('"@@X@@"', token), path, token
    elif kind == "dupkey":
        objects = [p for p in [(), *paths] if isinstance(_parent(tree, (*p, 0)) if p else tree, dict)
                   and (_parent(tree, (*p, 0)) if p else tree)]
        path = data.draw(st.sampled_from(objects))
        obj = _parent(tree, (*path, 0)) if path else tree
        key = data.draw(st.sampled_from(sorted(obj)))
        obj["@@K@@"] = "other"
        return json.dumps(tree).replace('"@@K@@"', json.dumps(key)), (*path, key), ""
    return json.dumps(tree), path, token


def _bytes_mutation(raw: bytes, data: st.DataObject, kind: str) -> tuple[bytes, int]:
    where = data.draw(st.integers(0, len(raw)))
    if kind == "truncate":
        return raw[:where], where
    return raw[:where] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[where:], where


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readback")
    write_run(root / "a", tiny_suite())
    write_run(root / "b", tiny_suite(), wins=lambda i: i % 2 == 0)
    baseline = baseline_from_results(json.loads((root / "a" / "results.json").read_text()))
    (root / "baseline.json").write_text(json.dumps(baseline, indent=1) + "\n")
    (root / "tiny.yaml").write_text(json.dumps(TINY))
    assert main(["compare", str(root / "a"), str(root / "b"), "--out", str(root / "cmp")]) == 0
    return root


@pytest.fixture(autouse=True)
def no_pictures(monkeypatch):
    """The forest plot and the report's chart read nothing back: drawn as empty files here, for speed."""
    monkeypatch.setattr("simeval.compare.plot_forest", lambda result, path: path.write_bytes(b""))
    monkeypatch.setattr("simeval.report.svg_chart", lambda results, *a, **k: "")


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert code in (0, 1, 2), code
    assert "Traceback" not in captured.err
    if code == 2:  # one line, after any warnings (a torn last line dropped)
        lines = [line for line in captured.err.splitlines() if not line.startswith("simeval: warning: ")]
        assert len(lines) == 1 and lines[0].startswith("simeval: error: ") and len(lines[0]) < 1100, captured.err
    return code, captured.out, captured.err


def _ok(record: dict) -> bool:
    return record["success"] and not record.get("error")


# ------------------------------------------------------------------ episodes.jsonl
def _expected_records(lines: list[str], kind: str, path: tuple | None, token: str, cut: int | None,
                      raw_len: int) -> list[dict] | None:
    """The records a reader must go on with after the mutation (None: it must refuse the file)."""
    records = [json.loads(text) for text in lines]
    if kind == "truncate":
        ends = [sum(len(t.encode()) + 1 for t in lines[:i]) + len(lines[i].encode()) for i in range(len(lines))]
        return [r for r, end in zip(records, ends) if end <= cut]
    if kind == "bytes":
        return records if cut == raw_len else None  # a new last line without its newline reads as torn
    if kind == "drop":
        return records if len(path) > 1 or path[0] not in REQUIRED else None
    if kind == "extra":
        return records
    if kind == "number":
        return records if path == ("wall_s",) and token == str(10**30) else None
    if kind == "nest":
        return records if path == ("params",) and token.startswith("{") and token.count("{") < 100 else None
    return None  # swap, dupkey, duplicate line


@FUZZ
@given(data=st.data(), kind=st.sampled_from((*MUTATIONS, "duplicate")))
def test_fuzzed_episode_logs(data, kind, template, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(template, Path(tmp) / "t"))
        log = root / "a" / "episodes.jsonl"
        lines = log.read_text().splitlines()
        raw = log.read_bytes()
        line, path, token, cut = data.draw(st.integers(0, len(lines) - 1)), None, "", None
        if kind in ("truncate", "bytes"):
            mutated, cut = _bytes_mutation(raw, data, kind)
        elif kind == "duplicate":
            at = data.draw(st.integers(line + 1, len(lines)))
            mutated = "\n".join(lines[:at] + [lines[line]] + lines[at:]).encode() + b"\n"
        else:
            fits = lambda path, value: len(path) == 1 and _fits(KINDS[path[0]], value)  # noqa: E731
            text, path, token = _mutate_tree(json.loads(lines[line]), data, kind, fits)
            mutated = "\n".join(lines[:line] + [text] + lines[line + 1:]).encode() + b"\n"
        log.write_bytes(mutated)
        survivors = _expected_records(lines, kind, path, token, cut, len(raw))

        code, out, err = _run(["compare", str(root / "a"), str(root / "b"), "--out", str(root / "cmp")], capsys)
        if survivors is None:
            assert code == 2 and str(log) in err, (kind, path, token, err)
            if kind == "duplicate":
                assert f"lines {line + 1} and {at + 1}" in err
            return
        base = {json.loads(t)["id"]: _ok(json.loads(t)) for t in (root / "b" / "episodes.jsonl").read_text().splitlines()}
        if not survivors:
            assert code == 2 and "share no episode ids" in err
            return
        assert code == 0, (kind, path, err)
        overall = json.loads((root / "cmp" / "compare.json").read_text())["comparisons"][0]["cells"][0]
        assert overall["n"] == len(survivors)
        assert overall["only_a"] == sum(_ok(r) and not base[r["id"]] for r in survivors)
        assert overall["only_b"] == sum(base[r["id"]] and not _ok(r) for r in survivors)

        code, out, err = _run(["check", "--run", str(root / "a"), "--baseline", str(root / "b")], capsys)
        shown = re.search(r"overall: \d+% \((\d+)/(\d+)\) -> \d+% \((\d+)/(\d+)\)", out)
        assert code in (0, 1) and shown, (out, err)
        assert [int(g) for g in shown.groups()] == [sum(base[r["id"]] for r in survivors), len(survivors),
                                                    sum(_ok(r) for r in survivors), len(survivors)]


# ------------------------------------------------------------------ results.json and baselines
def _cells(doc: dict) -> dict[str, dict]:
    cells = {"overall": doc["overall"]}
    for section in ("by_level", "by_task_robot"):
        cells.update({f"{section}[{k}]": v for k, v in (doc.get(section) or {}).items()})
    return {name: cell for name, cell in cells.items() if cell["n"]}


def _mutate_file(file: Path, data: st.DataObject, kind: str) -> Path:
    """``file`` (one JSON document) mutated in place by ``kind``; returns it."""
    if kind in ("truncate", "bytes"):
        mutated, _ = _bytes_mutation(file.read_bytes(), data, kind)
    else:
        mutated = _mutate_tree(json.loads(file.read_text()), data, kind)[0].encode()
    file.write_bytes(mutated)
    return file


def _exact(value: Any) -> int:
    assert isinstance(value, int) and not isinstance(value, bool), value
    return value


@FUZZ
@given(data=st.data(), kind=st.sampled_from(MUTATIONS), target=st.sampled_from(["baseline.json", "a/results.json"]))
def test_fuzzed_results_and_baselines(data, kind, target, template, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(template, Path(tmp) / "t"))
        file = _mutate_file(root / target, data, kind)
        code, out, err = _run(["check", "--run", str(root / "a"), "--baseline", str(root / "baseline.json")], capsys)
        if code == 2:
            assert str(file) in err or "not runs of the same episodes" in err, err
            return
        docs = [json.loads((root / name).read_text()) for name in ("a/results.json", "baseline.json")]
        run, base = _cells(docs[0]), _cells(docs[1])
        lines = [re.match(r"(?:REGRESSED|ok) +(\S+): \d+% \((\d+)/(\d+)\) -> \d+% \((\d+)/(\d+)\)", line)
                 for line in out.splitlines() if line.startswith(("REGRESSED", "ok "))]
        assert lines and all(lines), out
        assert {m.group(1) for m in lines} == set(run) & set(base)
        for m in lines:
            name, figures = m.group(1), [int(g) for g in m.groups()[1:]]
            assert figures == [_exact(base[name]["successes"]), _exact(base[name]["n"]),
                               _exact(run[name]["successes"]), _exact(run[name]["n"])], (name, figures)
        assert out.splitlines()[-1].startswith("PASS" if code == 0 else "FAIL")


# ------------------------------------------------------------------ run.json and simeval-run.json
@FUZZ
@given(data=st.data(), kind=st.sampled_from(MUTATIONS),
       target=st.sampled_from(["a/run.json", "a/simeval-run.json", "cmp/compare.json"]))
def test_fuzzed_run_descriptions_markers_and_earlier_comparisons(data, kind, target, template, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(template, Path(tmp) / "t"))
        file = _mutate_file(root / target, data, kind)
        expected = json.loads((root / "a" / "results.json").read_text())["overall"]
        code, out, err = _run(["compare", str(root / "a"), str(root / "b"), "--out", str(root / "cmp")], capsys)
        if code == 2:  # a damaged compare.json is not simeval's to replace: its folder is named
            assert str(file) in err or "not runs of the same episodes" in err or \
                (target == "cmp/compare.json" and f"--out {root / 'cmp'} holds files" in err), err
        else:
            assert json.loads((root / "cmp" / "compare.json").read_text())["comparisons"][0]["pairs"] == 8
        code, out, err = _run(["run", "--policy", "scripted", "--suite", str(root / "tiny.yaml"), "--out",
                               str(root / "a"), "--resume", "--workers", "1", "--video", "none"], capsys)
        if code == 2:
            assert str(file) in err or "holds a run of another suite" in err or "not a simeval run" in err, err
            return
        assert code == 0, err
        results = json.loads((root / "a" / "results.json").read_text())["overall"]
        assert (results["n"], results["successes"]) == (expected["n"], expected["successes"])
