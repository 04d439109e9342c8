"""Settings: every knob an operator can turn, read from ``CIRCLET_*`` environment variables."""

from __future__ import annotations

import math
import os
import stat
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from circlet.reach.network import NetworkGuard, own_addresses, parse_networks
from circlet.reach.repo_urls import RepoRules, parse_roots


def default_home() -> Path:
    return Path.home() / ".circlet"


class Limits(BaseSettings):
    """CircleCI's documented limits; an operator may raise them (``CIRCLET_LIMITS__CONTEXTS_PER_ORG=...``)."""

    model_config = SettingsConfigDict(env_prefix="CIRCLET_LIMITS__", extra="ignore")

    context_name_length: int = Field(200, description="Longest context name, in characters.")
    env_var_name_length: int = Field(300, description="Longest environment variable name.")
    env_var_value_length: int = Field(32 * 1024, description="Longest environment variable value.")
    env_vars_per_context: int = Field(100, description="Environment variables one context may hold.")
    contexts_per_org: int = Field(500, description="Contexts one organization may own.")
    request_body_bytes: int = Field(1024 * 1024, description="Largest accepted request body; larger is 413.")
    request_url_bytes: int = Field(
        16 * 1024, ge=1, description="Longest request target (path and query) `circlet serve` reads; longer is 414."
    )
    request_header_bytes: int = Field(
        64 * 1024, ge=1, description="Largest request headers, together, `circlet serve` reads; larger is 431."
    )
    upload_bytes: int = Field(
        5 * 1024**3,
        description="Largest upload of a runner's storage step (a cache, workspace layer, artifact or "
        "test results file, PUT /api/v3/runner/tasks/...); larger is 413.",
    )
    test_results_per_job: int = Field(
        250_000, ge=1, description="Test cases one job may store (all its JUnit files); more is 413."
    )
    artifacts_per_job: int = Field(10_000, ge=1, description="Artifacts one job may store; more is 413.")
    step_output_bytes_per_task: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="Step output one task (a job, or one of its parallel runs) may store; more is 413.",
    )
    jobs_per_workflow: int = Field(1000, ge=1, description="Jobs one workflow may expand to (matrices included).")
    jobs_per_pipeline: int = Field(5000, ge=1, description="Jobs all the workflows of one config may expand to.")
    matrix_combinations: int = Field(1000, ge=1, description="Combinations one `matrix` may have.")
    nesting_depth: int = Field(
        50, ge=1, description="Depth of commands invoked by commands, and of orbs imported by orbs."
    )
    steps_per_pipeline: int = Field(
        100_000, ge=1, description="Steps all the jobs of one config may expand to (commands included)."
    )
    compiled_config_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="Largest compiled config, in bytes (CircleCI's 8 MB)."
    )


class Settings(BaseSettings):
    """Server and admin settings. Environment names follow the nesting: ``CIRCLET_LIMITS__...``."""

    model_config = SettingsConfigDict(env_prefix="CIRCLET_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Where circlet keeps its data.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite at $CIRCLET_HOME/circlet.db.")
    secret_key: str = Field(
        "",
        description="Base64 (or any) secret for encryption at rest; empty means a key file in $CIRCLET_HOME.",
    )
    previous_secret_keys: str = Field(
        "", description="Comma-separated older secret keys, kept readable during `admin rotate-key`."
    )
    host: str = Field("127.0.0.1", description="Address `circlet serve` listens on.")
    port: int = Field(8080, description="Port `circlet serve` listens on.")
    rate_limit_per_minute: int = Field(
        6000, description="Requests one token may make per minute before 429; 0 disables the limit."
    )
    auth_cache_seconds: float = Field(
        2.0, description="How long a verified token is trusted before it is looked up again."
    )
    runner_lease_seconds: int = Field(
        60, ge=1, description="A claimed task whose runner sends no heartbeat for this long is failed."
    )
    custom_webhook_rate_per_minute: int = Field(
        60,
        ge=0,
        description="Pipelines one custom webhook trigger may start per minute (bursts of 10) before 429; 0 "
        "disables the limit.",
    )
    public_url: str = Field(
        "", description="The URL people and runners reach the server at; empty means http://HOST:PORT."
    )
    cache_retention_days: float = Field(
        15, gt=0, description="Caches older than this are deleted, as CircleCI's default retention of 15 days."
    )
    blob_sweep_hours: float = Field(
        6, gt=0, description="How often the server deletes expired caches and stored bytes no row refers to."
    )
    trust_jobs: bool = Field(
        False,
        description="Let the embedded runner run jobs as the server's own user when it cannot switch users "
        "(the server is not root): jobs can then read $CIRCLET_HOME, the key file and the database.",
    )
    shared_resource_classes: str = Field(
        "local",
        description="Comma-separated resource classes every organization's jobs may use (`local`: the "
        "embedded runner's); empty shares none. Any other class must be the job's own organization's.",
    )
    local_repo_roots: str = Field(
        "",
        description="Path prefixes (separated by ':' or ',') under which projects created through the API may "
        "name local repositories; empty means only the operator's `admin project create` may name local paths.",
    )
    allowed_private_networks: str = Field(
        "",
        description="Comma-separated CIDRs of private networks server-side fetches may connect to (e.g. a "
        "self-hosted forge at 10.0.0.0/8); loopback, link-local and the server's own addresses are refused "
        "unless listed here.",
    )
    org_creation: Literal["anyone", "operators"] = Field(
        "anyone",
        description="Who may create organizations through the API: anyone signed in (CircleCI's behaviour), or "
        "only users an operator allowed (`circlet admin user allow-org-creation LOGIN`).",
    )
    compile_workers: int = Field(
        0, ge=0, description="Worker processes that compile configs, per server process; 0 means one per CPU."
    )
    compile_timeout_seconds: float = Field(
        30, gt=0, description="A config compile taking longer is stopped, and its pipeline errored."
    )
    compile_memory_mb: int = Field(
        1024, ge=0, description="Address space of a compile worker; a compile needing more is stopped (0: no cap)."
    )
    compiles_per_org: int = Field(
        0,
        ge=0,
        description="Compiles of one organization in flight per server process, the rest queued in order; "
        "0 means all workers but one.",
    )
    compile_attempts: int = Field(
        3, ge=1, description="Compiles of a pipeline started before one interrupted (by a crash) ends errored."
    )
    compile_retry_after_seconds: float = Field(
        120, gt=0, description="A pipeline pending this long (its compile was interrupted) is compiled again."
    )
    scheduler: bool = Field(
        True,
        description="Fire scheduled pipelines from this server process. Any number of processes may: each fire "
        "time is claimed once, in the database.",
    )
    scheduler_poll_seconds: float = Field(
        60,
        gt=0,
        description="Longest the scheduler sleeps before looking for schedules other server processes created or "
        "changed (its own it sees at once): one query each time when nothing is due.",
    )
    test_scheduler_clock: str = Field(
        "",
        description="Tests only: `EPOCH:SPEED` makes the schedules' clock run SPEED times faster than real time from "
        "the Unix time EPOCH (0 stops it there). Empty: real time.",
    )
    insights_credits_per_minute: str = Field(
        "",
        description="Credits a job run costs per minute and parallel run, by resource class "
        "(`small=5,large=20`), for Insights and usage exports; a class not listed costs 0 (circlet has no billing).",
    )
    limits: Limits = Field(default_factory=Limits)

    @field_validator("test_scheduler_clock")
    @classmethod
    def _clock_parses(cls, value: str) -> str:
        if value:
            epoch, _, speed = value.partition(":")
            if float(epoch) < 0 or float(speed or 1) < 0:
                raise ValueError("EPOCH:SPEED, both numbers of at least 0")
        return value

    @field_validator("local_repo_roots")
    @classmethod
    def _roots_are_absolute(cls, value: str) -> str:
        parse_roots(value)
        return value

    @field_validator("insights_credits_per_minute")
    @classmethod
    def _rates_parse(cls, value: str) -> str:
        credit_rates(value)
        return value

    @field_validator("allowed_private_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)
        return value

    def repo_rules(self) -> RepoRules:
        return RepoRules(self.home, parse_roots(self.local_repo_roots))

    def network_guard(self) -> NetworkGuard:
        return NetworkGuard(parse_networks(self.allowed_private_networks), own_addresses())

    @property
    def shared_classes(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.shared_resource_classes.split(",") if name.strip())

    @property
    def compile_worker_count(self) -> int:
        return self.compile_workers or len(os.sched_getaffinity(0))

    @property
    def compiles_per_org_count(self) -> int:
        return self.compiles_per_org or max(1, self.compile_worker_count - 1)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def ensure_home(self) -> None:
        """$CIRCLET_HOME and everything under it are its owner's only: it holds the key file, the
        database, blobs and orbs. From here on this process creates files owner-only (umask 077,
        which SQLite's WAL and SHM files and the blob store follow); an existing home is tightened
        (group and other permissions removed from every entry); a home another user owns is refused."""
        os.umask(os.umask(0o077) | 0o077)
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        tighten_home(self.home)

    @cached_property
    def resolved_database_url(self) -> str:
        return normalize_database_url(self.database_url) or f"sqlite+aiosqlite:///{self.home / 'circlet.db'}"


class HomeError(Exception):
    """$CIRCLET_HOME cannot be made the server's own; the message says why."""


def tighten_home(home: Path) -> None:
    """Remove group and other permissions from ``home`` and everything under it, links excepted
    (their mode means nothing; what they point at is not the home's)."""
    owner = home.stat().st_uid
    if owner != os.geteuid():
        raise HomeError(
            f"$CIRCLET_HOME {home} belongs to user id {owner}, not to this process's user ({os.geteuid()}): "
            "run circlet as the home's owner, or give the home to this user"
        )
    _tighten(home)
    for directory, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            _tighten(Path(directory) / name)


def _tighten(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(mode) and mode & 0o077:
        os.chmod(path, stat.S_IMODE(mode) & 0o700)


def normalize_database_url(url: str) -> str:
    """Accept the URLs people write (``postgresql://``, ``sqlite:///``) and pick our async drivers."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def credit_rates(text: str) -> dict[str, float]:
    """``class=rate,class=rate`` (credits per minute) into a table; raises ValueError on nonsense."""
    rates: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, rate = part.partition("=")
        value = float(rate)
        if not name.strip() or not math.isfinite(value) or value < 0:
            raise ValueError(f"not a resource class rate: {part!r}")
        rates[name.strip()] = value
    return rates
