"""Policy tests: promtool-style test files run through the real engine and history."""

from usm.policytest.runner import CheckResult, FileResult, run, run_file
from usm.policytest.testfile import TestFile, expand_series, load_test_file

__all__ = ["CheckResult", "FileResult", "TestFile", "expand_series", "load_test_file", "run", "run_file"]
