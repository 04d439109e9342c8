"""``when``/``unless`` steps, should the compiler leave one in a job: the condition is evaluated here
(logic statements, SEMANTICS section 8) and the chosen steps run in order, writing to this step's
output; the step's status is that of the first of them that does not succeed. After a ``step halt``
the rest of them do not run."""

from __future__ import annotations

import math
import re
from typing import Any

from circlet.agent.context import StepContext, StepOutcome
from circlet.agent.protocol import Step


def truthy(statement: Any) -> bool:
    """The value of a logic statement."""
    if isinstance(statement, dict) and len(statement) == 1:
        ((operator, argument),) = statement.items()
        if operator == "and":
            return all(truthy(item) for item in argument)
        if operator == "or":
            return any(truthy(item) for item in argument)
        if operator == "not":
            return not truthy(argument)
        if operator == "equal":
            return bool(argument) and all(item == argument[0] for item in argument)
        if operator == "matches":
            return re.fullmatch(str(argument["pattern"]), str(argument["value"])) is not None
    if isinstance(statement, float) and math.isnan(statement):
        return False
    return statement not in (False, None, 0, "") and statement != {} and statement != []


async def conditional(context: StepContext) -> StepOutcome:
    chosen = truthy(context.step.args.get("condition"))
    if context.step.type == "unless":
        chosen = not chosen
    if not chosen:
        await context.output.line("Condition not met; no steps to run")
        return StepOutcome("success", 0)
    assert context.run_nested is not None
    for raw in context.step.args.get("steps") or []:
        if context.dirs.halt_marker.exists():
            break
        step = Step.from_json(raw if isinstance(raw, (str, dict)) else str(raw))
        await context.output.line(f"==> {step.name}")
        outcome = await context.run_nested(step)
        if outcome.status != "success":
            return outcome
    return StepOutcome("success", 0)
