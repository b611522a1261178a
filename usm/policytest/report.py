"""Reporting policy test results: text lines, coverage and JUnit XML."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from xml.etree import ElementTree

from usm.policytest.runner import FileResult


def counts(files: Sequence[FileResult]) -> tuple[int, int]:
    checks = [r for f in files for r in f.results]
    passed = sum(r.passed for r in checks)
    return passed, len(checks) - passed


def exit_status(files: Sequence[FileResult]) -> int:
    """2 if any file was invalid, else 1 if any test failed, else 0 (policy-spec §7.10)."""
    if any(f.invalid for f in files):
        return 2
    return 1 if counts(files)[1] else 0


def text_lines(files: Sequence[FileResult]) -> Iterable[tuple[str, str]]:
    """(style, line) pairs: one line per test, a diff under each failure, the invalid files."""
    for file in files:
        if file.invalid:
            yield "error", f"INVALID {file.path}"
            for problem in file.invalid.problems:
                yield "error", "  " + str(problem).replace("\n", "\n  ")
            continue
        for result in file.results:
            if result.passed:
                yield "ok", f"PASS {result.name}"
            else:
                yield "fail", f"FAIL {result.name}"
                for failure in result.failures:
                    yield "detail", "    " + failure


def summary(files: Sequence[FileResult]) -> str:
    passed, failed = counts(files)
    invalid = sum(1 for f in files if f.invalid)
    line = f"{passed} passed, {failed} failed"
    return line + (f", {invalid} invalid file{'s' if invalid != 1 else ''}" if invalid else "")


def coverage(files: Sequence[FileResult]) -> dict[str, list[str]]:
    """Policy source -> its rules that matched in no cycle of any test that used it."""
    rules: dict[str, tuple[str, ...]] = {}
    matched: dict[str, set[str]] = {}
    for file in files:
        if file.invalid:
            continue
        rules[file.policy_source] = file.rules
        matched.setdefault(file.policy_source, set()).update(file.matched)
    return {source: [r for r in names if r not in matched[source]] for source, names in sorted(rules.items())}


def junit_xml(files: Sequence[FileResult]) -> bytes:
    passed, failed = counts(files)
    invalid = sum(1 for f in files if f.invalid)
    suites = ElementTree.Element("testsuites", name="usm policy test", tests=str(passed + failed + invalid),
                                 failures=str(failed), errors=str(invalid))
    for file in files:
        suite = ElementTree.SubElement(suites, "testsuite", name=file.path, tests=str(len(file.results) or 1),
                                       failures=str(sum(not r.passed for r in file.results)),
                                       errors="1" if file.invalid else "0")
        if file.invalid:
            case = ElementTree.SubElement(suite, "testcase", classname=file.path, name="load")
            ElementTree.SubElement(case, "error", message="invalid file").text = str(file.invalid)
        for result in file.results:
            case = ElementTree.SubElement(suite, "testcase", classname=file.path, name=f"at {result.check.at:g}s")
            if not result.passed:
                ElementTree.SubElement(case, "failure", message="unexpected decisions or actions").text = \
                    "\n".join(result.failures)
    return ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)
