"""The agent's side of the runner protocol (docs/runner-protocol.md), one idea a module:
``payloads`` (the task a claim hands over, as typed dataclasses), ``client`` (``RunnerClient`` and
``TaskClient``: the calls, with retries on transport errors and 5xx answers), ``blobs`` (blob bodies
in and out: chunked files, or one exchange on a plain socket), ``output`` (``OutputShipper``: step
output batched, in order), and ``wire`` (what they share: the API prefix, the User-Agent, the
errors). The names callers use are here too."""

from circlet.agent.protocol.client import Backoff, RunnerClient, TaskClient
from circlet.agent.protocol.output import OutputShipper
from circlet.agent.protocol.payloads import Checkout, ExecutorSpec, JobInfo, SshKey, Step, Task
from circlet.agent.protocol.wire import Gone, ProtocolError, RunnerError, TaskLost, Unauthorized

__all__ = [
    "Backoff",
    "Checkout",
    "ExecutorSpec",
    "Gone",
    "JobInfo",
    "OutputShipper",
    "ProtocolError",
    "RunnerClient",
    "RunnerError",
    "SshKey",
    "Step",
    "Task",
    "TaskClient",
    "TaskLost",
    "Unauthorized",
]
