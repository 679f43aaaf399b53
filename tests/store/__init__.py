"""Storage-core tests (issue 2); a package so module names cannot clash with other suites."""
