"""Request bodies of the Project operations, as the spec describes them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictBool

from circlet.http.text import SafeStr


class Lenient(BaseModel):
    """The spec allows properties beyond the listed ones here; unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore")


class Strict(BaseModel):
    """The spec says ``additionalProperties: false`` here."""

    model_config = ConfigDict(extra="forbid")


class CreateProject(Lenient):
    """``name`` is the spec's; ``vcs_url`` and ``default_branch`` are circlet's additions that say
    where the code lives (a git URL or a local repository path) and which branch is the default."""

    name: SafeStr
    vcs_url: SafeStr | None = None
    default_branch: SafeStr | None = None


class CreateEnvVar(Lenient):
    name: SafeStr
    value: SafeStr


class CreateCheckoutKey(Lenient):
    type: Literal["user-key", "deploy-key"]


class AdvancedSettings(Strict):
    autocancel_builds: StrictBool | None = None
    build_fork_prs: StrictBool | None = None
    build_prs_only: StrictBool | None = None
    disable_ssh: StrictBool | None = None
    forks_receive_secret_env_vars: StrictBool | None = None
    oss: StrictBool | None = None
    set_github_status: StrictBool | None = None
    setup_workflows: StrictBool | None = None
    write_settings_requires_admin: StrictBool | None = None
    pr_only_branch_overrides: list[SafeStr] | None = None


class ProjectSettingsPatch(Strict):
    advanced: AdvancedSettings | None = None
