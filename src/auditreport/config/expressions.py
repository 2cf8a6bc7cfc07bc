"""Expressions in an audit definition: a measure's event, value or eligibility over the extract's columns.

A statistician writes ``los > 14`` or ``urgency == "emergency" and age >= 65`` in YAML. These are checked
here, when the definition is read, against a small safe subset of Python (names, numbers, text, comparisons,
``and``/``or``/``not``, ``& | ~``, arithmetic and ``in [...]`` lists): nothing can be called, imported or
looked up, so an expression cannot do anything but compute over columns. The data layer evaluates them with
pandas' ``DataFrame.eval`` (python engine), which understands exactly this subset, after checking every name
against the extract.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

#: The syntax an expression may use; anything else is refused with its name.
_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Invert, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.BitAnd, ast.BitOr, ast.Compare, ast.Eq, ast.NotEq,
    ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple,
)

_NODE_WORDS = {ast.Call: "a function call", ast.Attribute: "an attribute (a.b)", ast.Subscript: "indexing (a[b])",
               ast.Lambda: "a lambda", ast.IfExp: "a conditional (a if b else c)"}


class ExpressionError(ValueError):
    """An expression the definition gives is not one auditreport evaluates; ``reason`` says why."""


@dataclass(frozen=True)
class Expression:
    """A checked expression and the names it reads (columns or risk factors), in order of appearance."""

    text: str
    names: tuple[str, ...]

    @property
    def is_column(self) -> bool:
        """Whether the expression is one bare name (the column itself)."""
        return self.names == (self.text.strip(),)


def parse_expression(text: str) -> Expression:
    """Check ``text`` is a safe column expression and return it with the names it reads.

    Raises :class:`ExpressionError` naming what is not allowed (``a function call``, a syntax error with its
    position).

    Examples
    --------
    >>> parse_expression('los > 14 and urgency == "emergency"').names
    ('los', 'urgency')
    >>> parse_expression("died").is_column
    True
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"is not a valid expression ({exc.msg} at character {exc.offset}): {text!r}") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            what = _NODE_WORDS.get(type(node), type(node).__name__)
            raise ExpressionError(f"uses {what}, which an expression may not (allowed: column names, numbers, "
                                  f"text in quotes, comparisons, and/or/not, + - * /, in [...]): {text!r}")
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    if not names:
        raise ExpressionError(f"names no column: {text!r}")
    return Expression(text=text.strip(), names=tuple(names))
