"""The step types this runner can run: one table, so a new step type is one entry here and one
handler module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from circlet.agent.context import StepContext, StepOutcome
from circlet.agent.steps.checkout import checkout
from circlet.agent.steps.conditional import conditional
from circlet.agent.steps.remote_docker import setup_remote_docker
from circlet.agent.steps.run import run
from circlet.agent.steps.ssh_keys import add_ssh_keys
from circlet.agent.steps.storage import (
    attach_workspace,
    persist_to_workspace,
    restore_cache,
    save_cache,
    store_artifacts,
    store_test_results,
)

When = Literal["on_success", "on_fail", "always"]
Handler = Callable[[StepContext], Awaitable[StepOutcome]]


@dataclass(frozen=True)
class StepType:
    handler: Handler
    default_when: When = "on_success"
    """When the step runs if it does not say (``run`` steps may say with ``when:``)."""


STEP_TYPES: dict[str, StepType] = {
    "checkout": StepType(checkout),
    "run": StepType(run),
    "deploy": StepType(run),  # deprecated alias of run
    "when": StepType(conditional),
    "unless": StepType(conditional),
    "add_ssh_keys": StepType(add_ssh_keys),
    "setup_remote_docker": StepType(setup_remote_docker),
    "save_cache": StepType(save_cache),
    "restore_cache": StepType(restore_cache),
    "persist_to_workspace": StepType(persist_to_workspace),
    "attach_workspace": StepType(attach_workspace),
    "store_artifacts": StepType(store_artifacts, "always"),
    "store_test_results": StepType(store_test_results, "always"),
}


async def unsupported(context: StepContext) -> StepOutcome:
    step_type = context.step.type or "(none)"
    await context.output.line(f"circlet runner: step type {step_type!r} is not supported by this runner")
    return StepOutcome("failed", None, f"step type {step_type!r} is not supported by this runner")


def step_type(name: str) -> StepType:
    return STEP_TYPES.get(name) or StepType(unsupported)
