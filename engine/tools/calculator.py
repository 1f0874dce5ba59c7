"""``calculator``: arithmetic with simpleeval (https://github.com/danthedeckie/simpleeval), an AST
evaluator with an allow-list of operators, no attribute access, no ``eval``."""

from __future__ import annotations

import math

import simpleeval

from .registry import Tool, ToolContext, ToolError, register


def _calculator(context: ToolContext, args: dict) -> str:
    expression = args.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ToolError("give an expression, for example {\"expression\": \"2 * (3 + 4)\"}")
    if len(expression) > 500:
        raise ToolError("the expression is longer than 500 characters")
    functions = {name: getattr(math, name) for name in (
        "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log", "log10", "log2", "exp", "floor", "ceil",
        "factorial", "gcd", "radians", "degrees",
    )}
    functions.update({"abs": abs, "round": round, "min": min, "max": max})
    evaluator = simpleeval.SimpleEval(functions=functions, names={"pi": math.pi, "e": math.e, "tau": math.tau})
    try:
        value = evaluator.eval(expression)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (simpleeval.InvalidExpression, SyntaxError, TypeError, ValueError, OverflowError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError(f"{expression!r} is not a number")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


register(Tool(
    name="calculator",
    description="Evaluate an arithmetic expression exactly: + - * / // % **, parentheses, sqrt, log, sin, pi, e.",
    parameters={"type": "object", "properties": {"expression": {"type": "string", "description": "e.g. 2*(3+4)"}},
                "required": ["expression"]},
    func=_calculator,
))
