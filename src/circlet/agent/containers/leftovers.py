"""What an agent killed mid-job (SIGKILL, a crash, the host going down) leaves behind: the containers
(and podman pod) of its tasks, which nothing else would ever remove. Every container and pod an agent
makes is labelled with its owner (``circlet.agent``); an agent starting up removes those whose owner
is no longer alive, and only those, since several agents may share one engine."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from circlet.agent.containers.engine import ContainerEngine

log = logging.getLogger("circlet.agent")

AGENT_LABEL = "circlet.agent"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class SweepError(Exception):
    """The engine did not list or remove what it was asked to."""


@dataclass(frozen=True)
class Owner:
    """An agent process, told apart from every other that was or will be: a process id means
    something only where it was read (the host and its pid namespace: agents in containers sharing
    one engine each have their own), only until the host restarts (the boot id), and only for the
    process that had it then (its start time: ids are reused)."""

    place: str
    boot: str
    pid: int
    started: str

    def __str__(self) -> str:
        return f"{self.place}/{self.boot}/{self.pid}/{self.started}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        parts = text.rsplit("/", 3)
        if len(parts) != 4:
            return None
        place, boot, pid, started = parts
        try:
            number = int(pid)
        except ValueError:
            return None
        return cls(place, boot, number, started) if 0 < number < 2**31 else None


def start_time(pid: int) -> str:
    """When the process started, in clock ticks after boot: the 22nd field of /proc/PID/stat (the
    2nd, the command's name in parentheses, may itself hold spaces and parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]


def this_agent() -> Owner | None:
    """This process, or None where /proc cannot tell (its containers are then never swept)."""
    try:
        place = f"{socket.gethostname()}:{os.stat('/proc/self/ns/pid').st_ino}"
        pid = os.getpid()
        return Owner(place, BOOT_ID.read_text().strip(), pid, start_time(pid))
    except (OSError, IndexError):
        return None


def alive(owner: Owner, me: Owner) -> bool:
    """Whether the agent ``owner`` may still run, as far as the agent ``me`` can tell: in doubt, yes."""
    if owner.place != me.place:
        return True  # another host or pid namespace: its process id means nothing here
    if owner.boot != me.boot:
        return False  # this host restarted since
    try:
        return start_time(owner.pid) == owner.started
    except (FileNotFoundError, ProcessLookupError):
        return exists(owner.pid)
    except (OSError, IndexError):
        return True


def exists(pid: int) -> bool:
    """Whether some process has this id, even one that /proc (mounted with ``hidepid``) hides
    from us because another user runs it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # not ours to signal, but there
    return True


async def remove_leftovers(engine: ContainerEngine) -> None:
    """Remove the containers and pods of agents no longer alive. One line to the log, and never an
    error: the agent works with or without its predecessors' leftovers."""
    me = this_agent()
    if me is None:
        log.info("leftover containers not looked for", extra={"problem": "this host has no /proc to tell agents apart"})
        return
    try:
        pods, containers = await _remove_dead(engine, me)
    except (SweepError, OSError) as exc:
        log.warning("leftover containers not removed", extra={"problem": str(exc)})
        return
    log.info("leftover containers of dead agents removed", extra={"containers": containers, "pods": pods})


async def _remove_dead(engine: ContainerEngine, me: Owner) -> tuple[int, int]:
    """(pods, containers) removed. Pods first: removing one removes its containers, the infra
    container too (which carries the pod's labels, and which podman removes only with its pod)."""
    # No grace for what nobody waits for (docker's --force kills at once, podman's would wait 10s);
    # another agent starting may be removing the same.
    force = ["--force", "--ignore", "--time", "0"] if engine.kind == "podman" else ["--force"]
    pods: list[str] = []
    if engine.kind == "podman":
        pods = await _dead(engine, me, ("pod", "ps"), "{{.Name}}")
        if pods:
            await _call(engine, "pod", "rm", *force, *pods)
    containers = await _dead(engine, me, ("ps", "-a"), "{{.Names}}")
    # Services first: the primary holds the network namespace they joined.
    services = [name for name in containers if not name.endswith("-primary")]
    for names in (services, [name for name in containers if name not in services]):
        if names:
            await _call(engine, "rm", *force, *names)
    return len(pods), len(containers)


async def _dead(engine: ContainerEngine, me: Owner, listing: tuple[str, ...], names: str) -> list[str]:
    """The names (template ``names``) of what ``listing`` (a ``ps``) shows that dead agents own."""
    # podman's templates index the labels; docker's have a method for one label.
    owner = f'{{{{index .Labels "{AGENT_LABEL}"}}}}' if engine.kind == "podman" else f'{{{{.Label "{AGENT_LABEL}"}}}}'
    output = await _call(engine, *listing, "--filter", f"label={AGENT_LABEL}", "--format", f"{names} {owner}")
    dead = []
    for line in output.splitlines():
        name, _, label = line.strip().partition(" ")
        found = Owner.parse(label)
        if name and found is not None and not alive(found, me):
            dead.append(name)
    return dead


async def _call(engine: ContainerEngine, *args: str) -> str:
    answer = await engine.call(*args)
    if not answer.ok:
        raise SweepError(answer.last_line())
    return answer.output
