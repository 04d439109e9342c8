"""Tables. Every secret column is ciphertext (see ``circlet.secrets``); no plaintext secret is stored."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from circlet.db.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (UniqueConstraint("vcs_type", "name_key", name="uq_organizations_vcs_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255))
    # Names match case-insensitively, as GitHub and Bitbucket organization names do.
    name_key: Mapped[str] = mapped_column(String(255))
    vcs_type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    avatar_url: Mapped[str] = mapped_column(String(1024), default="", server_default="")


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    login: Mapped[str] = mapped_column(String(255))
    login_key: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    avatar_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # CIRCLET_ORG_CREATION=operators: only users an operator allowed may create organizations.
    may_create_orgs: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # argon2id (``circlet admin user set-password``); None: the user signs in to the web app with a token.
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Membership(Base):
    __tablename__ = "memberships"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


Index("ix_memberships_user", Membership.user_id)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: tokens are 256-bit random strings, so a slow hash adds nothing.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_groups_org_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


Index("ix_groups_org_created", Group.org_id, Group.created_at, Group.id)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "name_key", name="uq_projects_org_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(255))
    vcs_url: Mapped[str] = mapped_column(String(2048), default="")
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    # Set by the operator's `admin project create`: the server fetches it as the operator would
    # (local paths, the server's own credentials); an API-set location is fetched under docs/security.md.
    repo_set_by_operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Context(Base):
    __tablename__ = "contexts"
    __table_args__ = (
        UniqueConstraint("org_id", "name", name="uq_contexts_org_name"),
        # The keyset of the context list: (owner, created_at, id).
        Index("ix_contexts_org_created", "org_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContextEnvVar(Base):
    __tablename__ = "context_env_vars"

    context_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contexts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContextRestriction(Base):
    __tablename__ = "context_restrictions"
    __table_args__ = (
        UniqueConstraint("context_id", "restriction_type", "restriction_value", name="uq_context_restrictions"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    context_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contexts.id", ondelete="CASCADE"))
    restriction_type: Mapped[str] = mapped_column(String(16))
    restriction_value: Mapped[str] = mapped_column(Text)
    # The project's or group's name at the time of creation, as CircleCI reports it.
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProjectSettings(Base):
    """A project's advanced settings; a project without a row has CircleCI's defaults."""

    __tablename__ = "project_settings"

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    autocancel_builds: Mapped[bool] = mapped_column(default=False)
    build_fork_prs: Mapped[bool] = mapped_column(default=False)
    build_prs_only: Mapped[bool] = mapped_column(default=False)
    disable_ssh: Mapped[bool] = mapped_column(default=False)
    forks_receive_secret_env_vars: Mapped[bool] = mapped_column(default=False)
    oss: Mapped[bool] = mapped_column(default=False)
    set_github_status: Mapped[bool] = mapped_column(default=True)
    setup_workflows: Mapped[bool] = mapped_column(default=False)
    write_settings_requires_admin: Mapped[bool] = mapped_column(default=False)
    pr_only_branch_overrides: Mapped[list[str]] = mapped_column(JSON, default=list)


class ProjectEnvVar(Base):
    __tablename__ = "project_env_vars"

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CheckoutKey(Base):
    """An SSH key pair a job checks code out with; the private half is sealed, never returned."""

    __tablename__ = "checkout_keys"
    __table_args__ = (
        UniqueConstraint("project_id", "fingerprint_md5", name="uq_checkout_keys_project_md5"),
        UniqueConstraint("project_id", "fingerprint_sha256", name="uq_checkout_keys_project_sha256"),
        Index("ix_checkout_keys_project_created", "project_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key_type: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint_md5: Mapped[str] = mapped_column(String(64))
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    preferred: Mapped[bool] = mapped_column(default=False)
    key_id: Mapped[str] = mapped_column(String(32))
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProjectSshKey(Base):
    """An additional SSH key of a project (API v1.1 ``ssh-key``), for ``add_ssh_keys``: a key the
    user brought, for one hostname or (hostname ``""``) for every host. The private half is sealed."""

    __tablename__ = "project_ssh_keys"
    __table_args__ = (
        # One key may serve several hostnames, each its own row; the same key twice for one hostname
        # is a duplicate. The MD5 and SHA256 fingerprints name the same key, so one of them suffices.
        UniqueConstraint("project_id", "fingerprint_md5", "hostname", name="uq_project_ssh_keys_key_host"),
        Index("ix_project_ssh_keys_project_created", "project_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    hostname: Mapped[str] = mapped_column(String(255), default="")
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint_md5: Mapped[str] = mapped_column(String(64))
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    private_key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrbAllowListEntry(Base):
    """A URL prefix from which an organization's configs may import URL orbs."""

    __tablename__ = "orb_allow_list_entries"
    __table_args__ = (Index("ix_orb_allow_list_entries_org_created", "org_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(2048))
    auth: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- pipelines, workflows, jobs and the task queue (issue 5) --------------------------------------


class RunnerResourceClass(Base):
    """A self-hosted runner class ``namespace/name``, owned by the organization whose name is the
    namespace (docs/compatibility.md); only that organization's jobs run on it."""

    __tablename__ = "runner_resource_classes"
    __table_args__ = (Index("ix_runner_resource_classes_org", "org_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255), unique=True)
    namespace: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunnerToken(Base):
    """A runner agent's credential, bound to one resource class (and through it to the class's
    organization; none for the classes the operator shares); only its SHA-256 is stored."""

    __tablename__ = "runner_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    resource_class: Mapped[str] = mapped_column(String(255))
    resource_class_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runner_resource_classes.id", ondelete="CASCADE"), nullable=True
    )
    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When a runner with this token last asked for work (written at most every few seconds).
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RunnerInstance(Base):
    """A runner agent as seen by its claims: one row per resource class and runner name."""

    __tablename__ = "runner_instances"
    __table_args__ = (UniqueConstraint("resource_class", "name", name="uq_runner_instances_class_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    resource_class: Mapped[str] = mapped_column(String(255))
    resource_class_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runner_resource_classes.id", ondelete="CASCADE"), nullable=True
    )
    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True)
    token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("runner_tokens.id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(255), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it last claimed a task.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ProjectCounter(Base):
    """The last pipeline and job numbers of a project: incremented in place, never reused."""

    __tablename__ = "project_counters"

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    pipeline_number: Mapped[int] = mapped_column(Integer, default=0)
    job_number: Mapped[int] = mapped_column(Integer, default=0)


class PipelineDefinition(Base):
    __tablename__ = "pipeline_definitions"
    __table_args__ = (Index("ix_pipeline_definitions_project_created", "project_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    config_file_path: Mapped[str] = mapped_column(String(1024), default=".circleci/config.yml")
    # "" means the project's own repository (its vcs_url).
    config_repo_url: Mapped[str] = mapped_column(String(2048), default="")
    checkout_repo_url: Mapped[str] = mapped_column(String(2048), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PipelineTrigger(Base):
    __tablename__ = "pipeline_triggers"
    __table_args__ = (Index("ix_pipeline_triggers_definition_created", "definition_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    definition_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipeline_definitions.id", ondelete="CASCADE"))
    event_name: Mapped[str] = mapped_column(String(255), default="")
    event_source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_preset: Mapped[str] = mapped_column(String(64), default="")
    checkout_ref: Mapped[str] = mapped_column(String(255), default="")
    config_ref: Mapped[str] = mapped_column(String(255), default="")
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Pipeline(Base):
    __tablename__ = "pipelines"
    __table_args__ = (
        UniqueConstraint("project_id", "number", name="uq_pipelines_project_number"),
        Index("ix_pipelines_project_created", "project_id", "created_at", "id"),
        Index("ix_pipelines_state_updated", "state", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    errors: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    trigger_type: Mapped[str] = mapped_column(String(32), default="api")
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    definition_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    vcs_url: Mapped[str] = mapped_column(String(2048), default="")
    branch: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    revision: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config_revision: Mapped[str | None] = mapped_column(String(64), nullable=True)
    commit_subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    commit_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_file_path: Mapped[str] = mapped_column(String(1024), default=".circleci/config.yml")
    # An inline config given with the trigger (`pipeline/run` with `config.content`).
    inline_config: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(Text, default="")
    compiled: Mapped[str] = mapped_column(Text, default="")
    setup_source: Mapped[str] = mapped_column(Text, default="")
    compiled_setup: Mapped[str] = mapped_column(Text, default="")
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    continuation_key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # Compiles started: a pipeline is compiled as soon as it is committed, so it starts at 1; a sweep
    # retrying an interrupted compile counts one more, up to CIRCLET_COMPILE_ATTEMPTS.
    compile_attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Workflow(Base):
    __tablename__ = "workflows"
    __table_args__ = (
        Index("ix_workflows_pipeline_created", "pipeline_id", "created_at", "id"),
        # Insights: a project's (or one workflow's) runs in a reporting window.
        Index("ix_workflows_project_created", "project_id", "created_at"),
        Index("ix_workflows_project_name_created", "project_id", "name", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    tag: Mapped[str | None] = mapped_column(String(16), nullable=True)
    started_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    canceled_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    rerun_of: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    max_auto_reruns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auto_rerun_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Job(Base):
    """One node of a workflow: a build job (run as one task per parallel index) or an approval."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_workflow", "workflow_id"),
        Index("ix_jobs_project_number", "project_id", "number"),
        Index("ix_jobs_project_started", "project_id", "started_at"),  # Insights' job time series
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16))
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    requires: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    contexts: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The compiled job: executor, environment, steps, parallelism, working directory.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parallelism: Mapped[int] = mapped_column(Integer, default=1)
    resource_class: Mapped[str] = mapped_column(String(255), default="local")
    executor_type: Mapped[str] = mapped_column(String(32), default="docker")
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    approval_request_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    approved_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    canceled_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    # A job a rerun did not run again: the original it stands for.
    reused_from: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Task(Base):
    """The queue: one row per job and parallel index, claimed by a runner of its resource class."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_claim", "resource_class", "status", "created_at"),
        Index("ix_tasks_job", "job_id"),
        Index("ix_tasks_lease", "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    parallel_index: Mapped[int] = mapped_column(Integer, default=0)
    resource_class: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    runner_name: Mapped[str] = mapped_column(String(255), default="")
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Step output stored so far, against CIRCLET_LIMITS__STEP_OUTPUT_BYTES_PER_TASK (past it: the limit + 1).
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class StepRun(Base):
    __tablename__ = "step_runs"

    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    step_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), default="")
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StepOutput(Base):
    """Step output, append-only, in chunks as the runner sends them; out of the hot tables."""

    __tablename__ = "step_output"
    __table_args__ = (Index("ix_step_output_task_step", "task_id", "step_index", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Cache(Base):
    """A saved cache: immutable, its key unique in its project. The bytes are a blob (circlet.blobs)."""

    __tablename__ = "caches"
    __table_args__ = (
        UniqueConstraint("project_id", "key", name="uq_caches_project_key"),
        Index("ix_caches_project_created", "project_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(1024))
    blob_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkspaceLayer(Base):
    """A ``persist_to_workspace`` of one job (its original job, for reruns): a tar blob."""

    __tablename__ = "workspace_layers"
    __table_args__ = (Index("ix_workspace_layers_job", "job_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    blob_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    node_index: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str] = mapped_column(String(1024))
    blob_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TestResult(Base):
    """One test case of a job's JUnit XML (``store_test_results``)."""

    __test__ = False  # not a pytest class
    __tablename__ = "test_results"
    __table_args__ = (
        Index("ix_test_results_job", "job_id", "id"),
        Index("ix_test_results_project", "project_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(255), default="")
    run_time: Mapped[float] = mapped_column(default=0.0)
    file: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    result: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(1024))
    classname: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SerialGroupHolder(Base):
    """The job holding a serial group of an organization (one row per group: the unique key is
    the lock). A build job holds it while it runs; a job group's ``lock`` job until its ``unlock``."""

    __tablename__ = "serial_group_holders"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), index=True)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SerialGroupWaiter(Base):
    """A ready job waiting for a serial group; the oldest (lowest id) is started when it frees."""

    __tablename__ = "serial_group_waiters"
    __table_args__ = (Index("ix_serial_group_waiters_group", "org_id", "key", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(512))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Schedule(Base):
    """A scheduled pipeline (the Schedule tag). ``next_fire_at`` is the first fire time not yet
    handled: the scheduler sleeps until the smallest one (an index, not a scan), and moves it forward
    with a conditional update when it fires or skips."""

    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_schedules_project_name"),
        Index("ix_schedules_project_created", "project_id", "created_at", "id"),
        Index("ix_schedules_next_fire_at", "next_fire_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    timetable: Mapped[dict[str, Any]] = mapped_column(JSON)
    # `current` (the user who created or last set it) or `system` (the built-in system actor).
    attribution: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScheduleFire(Base):
    """One fire time of a schedule, claimed in the transaction that creates its pipeline: the primary
    key makes a second claim of the same time fail, whatever the number of server processes. Rows
    older than any process could still claim are deleted by the scheduler."""

    __tablename__ = "schedule_fires"
    __table_args__ = (Index("ix_schedule_fires_fire_at", "fire_at"),)

    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True)
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    pipeline_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random secret, the row only its SHA-256. A session begun
    with a pasted API token ends with that token (cascade, and the token's ``revoked_at`` is checked
    on every request); every session ends with its user."""

    __tablename__ = "web_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    api_token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProjectHookSecret(Base):
    """The secret a project's forge signs its webhook deliveries with (sealed)."""

    __tablename__ = "project_hook_secrets"

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HookDelivery(Base):
    """A forge delivery (or a polled ref update) already acted on: the unique key makes a
    redelivery, or a second server polling the same update, create nothing."""

    __tablename__ = "hook_deliveries"
    __table_args__ = (UniqueConstraint("project_id", "delivery", name="uq_hook_deliveries_project_delivery"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    delivery: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class TriggerWebhookSecret(Base):
    """The secret of a custom webhook trigger's URL (sealed)."""

    __tablename__ = "trigger_webhook_secrets"

    trigger_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pipeline_triggers.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class ProjectPoll(Base):
    """A project whose remote the server polls (`git ls-remote`) instead of receiving webhooks:
    the heads and tags it saw last, and when it is next due (claimed by moving it forward)."""

    __tablename__ = "project_polls"

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    every_seconds: Mapped[int] = mapped_column(Integer)
    next_poll_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    refs: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class UsageExport(Base):
    """A usage export an organization admin asked for: its CSV parts are blobs once it completes."""

    __tablename__ = "usage_exports"
    __table_args__ = (Index("ix_usage_exports_org", "org_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    requested_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    shared_org_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16))
    error_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    blob_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeployEnvironment(Base):
    """Where components are deployed (CircleCI's deploy environments), created by a job's first
    deploy marker naming it."""

    __tablename__ = "deploy_environments"
    __table_args__ = (
        UniqueConstraint("org_id", "name", name="uq_deploy_environments_org_name"),
        Index("ix_deploy_environments_org_created", "org_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeployComponent(Base):
    """What a project deploys (CircleCI's components), created by a job's first deploy marker naming it."""

    __tablename__ = "deploy_components"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_deploy_components_project_name"),
        Index("ix_deploy_components_org_created", "org_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    labels: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeployRelease(Base):
    """One deploy marker: a version of a component going to an environment (and namespace)."""

    __tablename__ = "deploy_releases"
    __table_args__ = (
        Index("ix_deploy_releases_component", "component_id", "environment_id", "created_at"),
        Index("ix_deploy_releases_workflow_name", "workflow_id", "name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    component_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deploy_components.id", ondelete="CASCADE"))
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deploy_environments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255), default="default")  # the deploy's name in its workflow
    version: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(255), default="default")
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    pipeline_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    job_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rollback_of: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the version rolled back from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
