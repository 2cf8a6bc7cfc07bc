"""Errors the pipeline reports to its users, each mapped to an exit code."""

from __future__ import annotations


class AuditReportError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1


class ConfigError(AuditReportError):
    """An audit definition is invalid (names the file and key)."""

    exit_code = 2


class DataValidationError(AuditReportError):
    """Input data broke one or more declared rules (names file, column, rule, rows)."""

    exit_code = 3

    def __init__(self, source: str, failures: list[dict]):
        self.source = source
        self.failures = failures
        super().__init__(self.render())

    def render(self, max_examples: int = 5) -> str:
        lines = [f"{self.source}: {len(self.failures)} validation rule(s) failed; nothing was written."]
        for f in self.failures:
            rows = f.get("rows") or []
            example = ", ".join(str(r) for r in rows[:max_examples])
            more = f" (and {len(rows) - max_examples} more)" if len(rows) > max_examples else ""
            lines.append(f"  column '{f['column']}': rule '{f['rule']}': {f['count']} row(s)"
                         + (f"; rows {example}{more}" if rows else ""))
            if f.get("examples"):
                lines.append(f"    e.g. {f['examples']}")
        return "\n".join(lines)


class RiskModelError(AuditReportError):
    """The risk model cannot be fitted on the data (names the factor and level, and the remedy)."""

    exit_code = 3


class BuildError(AuditReportError):
    """One or more reports failed to build."""

    exit_code = 4
