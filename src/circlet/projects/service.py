"""What may be done with projects, by whom: the Project tag.

Roles (docs/compatibility.md): members of every role read a project, its settings, the
masked values of its variables and its public checkout keys; only admins create and delete projects
and write settings, variables and keys. An outsider gets 404, as for a project that does not exist.
Variable values and private keys are sealed at rest (``circlet.secrets``) and never returned.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import ROLE_ADMIN, ROLE_VIEWER, Principal, require_role
from circlet.db.models import CheckoutKey, Organization, Project, ProjectSettings
from circlet.db.types import utcnow
from circlet.http.errors import ApiError, BadRequest, Conflict, NotFound
from circlet.http.responses import timestamp
from circlet.http.text import check_single_line_name
from circlet.orgs.service import find_org
from circlet.orgs.slugs import PROVIDER_NAMES, VCS_BY_PREFIX, org_slug, parse_project_slug, project_slug
from circlet.projects import repository as projects
from circlet.projects.repository import OrgFields, ProjectFields, ProjectInOrg, ProjectRef
from circlet.projects.schemas import AdvancedSettings
from circlet.projects.ssh_keys.pairs import generate_key_pair
from circlet.reach.network import Refused
from circlet.reach.repo_urls import RepoRules
from circlet.secrets import Keyring, SealedValue
from circlet.settings import Limits
from circlet.users.service import OPERATOR, AccountError

MISSING_PROJECT = "Project not found."
ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VCS_PROJECT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
MAX_ENV_VARS_PER_PROJECT = 1000
MAX_CHECKOUT_KEYS_PER_PROJECT = 100
# Masks kept by a service for the variables it listed (see ``ProjectService.list_env_vars``); all are
# dropped when there would be more, as the authenticator drops its principals.
MAX_KEPT_MASKS = 10_000
# Only the masks of values sealed in at most this many bytes are kept (the key holds the sealed bytes,
# so this bounds the memory at about 13 MB); a longer value is opened at every list.
MAX_KEPT_SEALED_BYTES = 1024
SETTING_DEFAULTS: dict[str, Any] = {
    "autocancel_builds": False,
    "build_fork_prs": False,
    "build_prs_only": False,
    "disable_ssh": False,
    "forks_receive_secret_env_vars": False,
    "oss": False,
    "set_github_status": True,
    "setup_workflows": False,
    "write_settings_requires_admin": False,
    "pr_only_branch_overrides": [],
}
DEFAULT_VCS_URL = {
    "github": "https://github.com/{org}/{name}",
    "bitbucket": "https://bitbucket.org/{org}/{name}",
}
KEY_TYPE_REPORTED = {"deploy-key": "deploy-key", "user-key": "github-user-key"}


class StandaloneProjectCreation(ApiError):
    status = 405
    default_message = (
        "Create projects using the API is currently supported for classic Github OAuth and Bitbucket projects only."
    )


def env_var_context(project_id: uuid.UUID, name: str) -> str:
    """Associated data binding a sealed variable to its row (the name last: a list formats the rest once)."""
    return f"project-env-var:{project_id}:{name}"


def checkout_key_context(project_id: uuid.UUID, key_id: uuid.UUID) -> str:
    """Associated data binding a sealed private key to its row."""
    return f"checkout-key:{project_id}:{key_id}"


def masked(value: str) -> str:
    """``xxxx`` and the last four characters, as CircleCI shows a value; a value shorter than eight
    characters shows no character at all, since four of them would be half of it or more."""
    return "xxxx" + (value[-4:] if len(value) >= 8 else "")


def project_body(project: Project | ProjectFields, org: Organization | OrgFields) -> dict[str, Any]:
    return {
        "slug": project_slug(org.vcs_type, org.name, org.id, project.name, project.id),
        "name": project.name,
        "id": project.id,
        "organization_name": org.name,
        "organization_slug": org_slug(org.vcs_type, org.name, org.id),
        "organization_id": org.id,
        "vcs_info": {
            "vcs_url": project.vcs_url,
            "provider": PROVIDER_NAMES[org.vcs_type],
            "default_branch": project.default_branch,
        },
    }


def settings_values(row: ProjectSettings | None) -> dict[str, Any]:
    """The effective settings: the stored row, or CircleCI's defaults for a project without one."""
    if row is None:
        return {**SETTING_DEFAULTS, "pr_only_branch_overrides": []}
    return {name: getattr(row, name) for name in SETTING_DEFAULTS}


def checkout_key_body(key: CheckoutKey, digest: str = "md5") -> dict[str, Any]:
    return {
        "public-key": key.public_key,
        "type": key.key_type,
        "fingerprint": key.fingerprint_sha256 if digest == "sha256" else key.fingerprint_md5,
        "preferred": key.preferred,
        "created-at": timestamp(key.created_at),
    }


def check_vcs_url(vcs_url: str, rules: RepoRules, *, operator: bool) -> None:
    """Where an API caller (or, with ``operator``, the operator) may say a project's code lives:
    docs/security.md, "What an organization can reach"."""
    if not vcs_url or len(vcs_url) > 2048 or not vcs_url.isprintable() or any(c.isspace() for c in vcs_url):
        raise BadRequest("vcs_url: a git URL or repository path of 1 to 2048 characters, without spaces.")
    try:
        if operator:
            rules.check_for_operator(vcs_url)
        else:
            rules.check_for_api(vcs_url)
    except Refused as exc:
        raise BadRequest(f"vcs_url: {exc}.") from None


def check_branch(branch: str) -> None:
    if not branch or len(branch) > 255 or not branch.isprintable() or any(c.isspace() for c in branch):
        raise BadRequest("default_branch: 1 to 255 characters, without spaces.")


def check_project_name(name: str, vcs_type: str) -> None:
    if vcs_type != "circleci":
        if not VCS_PROJECT_NAME.match(name) or name in (".", ".."):
            raise BadRequest("name: 1 to 100 letters, digits, '-', '_' or '.'.")
    elif not name.strip() or name != name.strip() or len(name) > 100 or "/" in name or not name.isprintable():
        raise BadRequest("name: 1 to 100 printable characters, no '/', no surrounding whitespace.")


@dataclass
class ProjectService:
    keyring: Keyring
    limits: Limits
    repo_rules: RepoRules
    # (key id, context, sealed bytes) -> the mask of the value they open to; only masks, never a value
    _masks: dict[tuple[str, str, bytes], str] = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- projects ---------------------------------------------------------------------------------

    async def find(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        least: str = ROLE_VIEWER,
        action: str = "read it",
    ) -> ProjectInOrg:
        """The project a slug names, if the caller has at least ``least`` in its organization."""
        parsed = parse_project_slug(*slug)
        found = await projects.find_project(session, parsed) if parsed is not None else None
        if found is None:
            raise NotFound(MISSING_PROJECT)
        require_role(principal, found.org.id, least, missing=MISSING_PROJECT, action=action)
        return found

    async def followed_projects(self, session: AsyncSession, principal: Principal) -> dict[str, Any]:
        """The projects CircleCI's private API says the user follows (``/api/private/me/followed-projects``,
        what the CircleCI MCP server lists): circlet has no following, so every project of every
        organization the user belongs to, in one page."""
        items = [
            {
                "default_branch": project.default_branch,
                "id": project.id,
                "name": project.name,
                "organization_id": org.id,
                "organization_name": org.name,
                "slug": project_slug(org.vcs_type, org.name, org.id, project.name, project.id),
                "vcs_type": org.vcs_type,
            }
            for project, org in await projects.projects_in_orgs(session, list(principal.roles))
        ]
        return {"items": items, "next_page_token": None}

    async def find_to_read(self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str]) -> ProjectRef:
        """``find`` for members of every role, as plain values: for the reads that change nothing."""
        parsed = parse_project_slug(*slug)
        found = await projects.find_project_ref(session, parsed) if parsed is not None else None
        if found is None:
            raise NotFound(MISSING_PROJECT)
        require_role(principal, found.org.id, ROLE_VIEWER, missing=MISSING_PROJECT, action="read it")
        return found

    async def create_in_org(
        self,
        session: AsyncSession,
        principal: Principal,
        org_slug_or_id: str,
        name: str,
        vcs_url: str | None = None,
        default_branch: str | None = None,
    ) -> dict[str, Any]:
        org = await find_org(session, principal, org_slug_or_id)
        require_role(principal, org.id, ROLE_ADMIN, missing="Organization not found.", action="create projects")
        check_project_name(name, org.vcs_type)
        if await projects.find_project_by_name(session, org.id, name) is not None:
            raise Conflict(f"A project named '{name}' already exists in this organization.")
        project = await self._add(session, principal, org, name, vcs_url, default_branch)
        return project_body(project, org)

    async def create_by_slug(
        self, session: AsyncSession, principal: Principal, provider: str, organization: str, name: str
    ) -> dict[str, Any]:
        """``POST /project/{provider}/{organization}/{project}``: answers with the new project's settings."""
        if VCS_BY_PREFIX.get(provider.lower()) == "circleci":
            raise StandaloneProjectCreation()
        org = await find_org(session, principal, f"{provider}/{organization}")
        require_role(principal, org.id, ROLE_ADMIN, missing="Organization not found.", action="create projects")
        check_project_name(name, org.vcs_type)
        if await projects.find_project_by_name(session, org.id, name) is not None:
            raise BadRequest(f"A project named '{name}' already exists in this organization.")
        await self._add(session, principal, org, name, None, None)
        return {"advanced": settings_values(None)}

    async def _add(
        self,
        session: AsyncSession,
        principal: Principal,
        org: Organization,
        name: str,
        vcs_url: str | None,
        default_branch: str | None,
    ) -> Project:
        """Checks where the code lives, then inserts; the caller has checked the name."""
        if vcs_url is None:
            vcs_url = DEFAULT_VCS_URL.get(org.vcs_type, "").format(org=org.name, name=name)
        else:
            check_vcs_url(vcs_url, self.repo_rules, operator=False)
        branch = default_branch if default_branch is not None else "main"
        check_branch(branch)
        try:
            project = await projects.add_project(session, org.id, name, vcs_url, branch)
        except projects.DuplicateProject:
            raise Conflict(f"A project named '{name}' already exists in this organization.") from None
        await self._audit(session, principal, "project.create", project.id, org.id, {"name": name})
        return project

    async def delete(self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str]) -> uuid.UUID:
        """Deletes the project; returns its id, for its mirror to go after the commit."""
        found = await self.find(session, principal, slug, ROLE_ADMIN, "delete projects")
        await projects.delete_project(session, found.project.id)
        await self._audit(
            session, principal, "project.delete", found.project.id, found.org.id, {"name": found.project.name}
        )
        return found.project.id

    # -- settings ---------------------------------------------------------------------------------

    async def get_settings(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str]
    ) -> dict[str, Any]:
        found = await self.find(session, principal, slug)
        return {"advanced": settings_values(await projects.get_settings(session, found.project.id))}

    async def patch_settings(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        changes: AdvancedSettings,
    ) -> dict[str, Any]:
        found = await self.find(session, principal, slug, ROLE_ADMIN, "change project settings")
        values = changes.model_dump(exclude_none=True)
        current = settings_values(await projects.get_settings(session, found.project.id))
        if values:
            await projects.save_settings(session, found.project.id, {**current, **values})
            await self._audit(session, principal, "project.settings.update", found.project.id, found.org.id, values)
        return {"advanced": {**current, **values}}

    # -- environment variables --------------------------------------------------------------------

    async def list_env_vars(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str]
    ) -> dict[str, Any]:
        """The project's variables, masked.

        A mask is a function of what opens the value: the key (its id is a hash of it), the sealed
        bytes (a random nonce, the ciphertext and its tag, new at every write and every re-seal) and
        the context they are bound to (the project and the name). The service keeps the masks it made
        by those three, so a value that has not changed since it was last listed is not opened again
        (unsealing ten values was a fifth of the request). What is kept is only what the API shows any member,
        in this process's memory; nothing is stored. A ciphertext altered or copied into another row
        meets no kept mask, is opened and fails as before; a new value or a re-seal is new bytes."""
        parsed = parse_project_slug(*slug)
        found = await projects.find_project_ids(session, parsed) if parsed is not None else None
        if found is None:
            raise NotFound(MISSING_PROJECT)
        project_id, org_id = found
        require_role(principal, org_id, ROLE_VIEWER, missing=MISSING_PROJECT, action="read it")
        # env_var_context(project_id, name) for each row, with the project's part formatted once
        bound_to = env_var_context(project_id, "")
        masks = self._masks
        items = []
        for name, key_id, sealed, created_at in await projects.list_env_vars(session, project_id):
            mask = masks.get((key_id, bound_to + name, sealed))
            if mask is None:
                mask = self._open_mask(key_id, bound_to + name, sealed)
            items.append({"name": name, "value": mask, "created-at": created_at})
        return {"items": items, "next_page_token": None}

    def _open_mask(self, key_id: str, context: str, sealed: bytes) -> str:
        """The mask of a sealed value, opened (``SecretKeyError`` if it does not open), and kept."""
        mask = masked(self.keyring.open(SealedValue(key_id, sealed), context))
        if len(sealed) > MAX_KEPT_SEALED_BYTES:
            return mask
        if len(self._masks) >= MAX_KEPT_MASKS:
            self._masks.clear()
        self._masks[(key_id, context, sealed)] = mask
        return mask

    async def create_env_var(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], name: str, value: str
    ) -> dict[str, Any]:
        found = await self.find(session, principal, slug, ROLE_ADMIN, "change environment variables")
        project_id = found.project.id
        self._check_env_var(name, value)
        exists = await projects.get_env_var(session, project_id, name) is not None
        if not exists and await projects.count_env_vars(session, project_id) >= MAX_ENV_VARS_PER_PROJECT:
            raise BadRequest(f"The project already has {MAX_ENV_VARS_PER_PROJECT} environment variables.")
        sealed = self.keyring.seal(value, env_var_context(project_id, name))
        created_at = await projects.upsert_env_var(session, project_id, name, sealed.key_id, sealed.ciphertext)
        action = "project.env_var.update" if exists else "project.env_var.create"
        await self._audit(session, principal, action, project_id, found.org.id, {"variable": name})
        return {"name": name, "value": masked(value), "created-at": timestamp(created_at)}

    async def get_env_var(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], name: str
    ) -> dict[str, Any]:
        found = await self.find(session, principal, slug)
        row = await projects.get_env_var(session, found.project.id, name)
        if row is None:
            raise NotFound("Environment variable not found.")
        value = self.keyring.open(SealedValue(row.key_id, row.ciphertext), env_var_context(found.project.id, name))
        return {"name": name, "value": masked(value), "created-at": timestamp(row.created_at)}

    async def delete_env_var(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], name: str
    ) -> None:
        found = await self.find(session, principal, slug, ROLE_ADMIN, "change environment variables")
        if not await projects.delete_env_var(session, found.project.id, name):
            raise NotFound("Environment variable not found.")
        await self._audit(
            session, principal, "project.env_var.delete", found.project.id, found.org.id, {"variable": name}
        )

    async def env_var_values(self, session: AsyncSession, project_id: uuid.UUID) -> dict[str, str]:
        """The plaintext variables of a project, for a job about to run; never for a response."""
        return {
            name: self.keyring.open(SealedValue(key_id, sealed), env_var_context(project_id, name))
            for name, key_id, sealed, _ in await projects.list_env_vars(session, project_id)
        }

    def _check_env_var(self, name: str, value: str) -> None:
        check_single_line_name(name, "name")
        if not ENV_VAR_NAME.fullmatch(name) or len(name) > self.limits.env_var_name_length:
            raise BadRequest(
                f"name: at most {self.limits.env_var_name_length} letters, digits and underscores, "
                "not starting with a digit."
            )
        if len(value) > self.limits.env_var_value_length:
            raise BadRequest(f"value: longer than {self.limits.env_var_value_length} characters, the most allowed.")

    # -- checkout keys ----------------------------------------------------------------------------

    async def list_checkout_keys(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], digest: str
    ) -> dict[str, Any]:
        found = await self.find(session, principal, slug)
        keys = await projects.list_checkout_keys(session, found.project.id)
        return {"items": [checkout_key_body(k, digest) for k in keys], "next_page_token": None}

    async def create_checkout_key(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], key_type: str
    ) -> dict[str, Any]:
        found = await self.find(session, principal, slug, ROLE_ADMIN, "create checkout keys")
        project_id = found.project.id
        if len(await projects.list_checkout_keys(session, project_id)) >= MAX_CHECKOUT_KEYS_PER_PROJECT:
            raise BadRequest(f"The project already has {MAX_CHECKOUT_KEYS_PER_PROJECT} checkout keys.")
        pair = generate_key_pair()
        key_id = uuid.uuid4()
        sealed = self.keyring.seal(pair.private_key, checkout_key_context(project_id, key_id))
        key = CheckoutKey(
            id=key_id,
            project_id=project_id,
            key_type=KEY_TYPE_REPORTED[key_type],
            public_key=pair.public_key,
            fingerprint_md5=pair.fingerprint_md5,
            fingerprint_sha256=pair.fingerprint_sha256,
            preferred=True,
            key_id=sealed.key_id,
            private_key_ciphertext=sealed.ciphertext,
            created_at=utcnow(),
        )
        await projects.add_checkout_key(session, key)
        await projects.prefer_newest_checkout_key(session, project_id)
        await self._audit(
            session,
            principal,
            "project.checkout_key.create",
            project_id,
            found.org.id,
            {"fingerprint": pair.fingerprint_md5, "type": key.key_type},
        )
        return checkout_key_body(key)

    async def get_checkout_key(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], fingerprint: str
    ) -> dict[str, Any]:
        found = await self.find(session, principal, slug)
        key = await projects.find_checkout_key(session, found.project.id, fingerprint)
        if key is None:
            raise NotFound("Checkout key not found.")
        return checkout_key_body(key, "sha256" if fingerprint.startswith("SHA256:") else "md5")

    async def delete_checkout_key(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], fingerprint: str
    ) -> None:
        found = await self.find(session, principal, slug, ROLE_ADMIN, "delete checkout keys")
        key = await projects.find_checkout_key(session, found.project.id, fingerprint)
        if key is None:
            raise NotFound("Checkout key not found.")
        await projects.delete_checkout_key(session, key.id)
        await projects.prefer_newest_checkout_key(session, found.project.id)
        await self._audit(
            session,
            principal,
            "project.checkout_key.delete",
            found.project.id,
            found.org.id,
            {"fingerprint": key.fingerprint_md5},
        )

    async def preferred_private_key(self, session: AsyncSession, project_id: uuid.UUID) -> str | None:
        """The private half of the preferred checkout key, for a job's checkout; never for a response."""
        for key in await projects.list_checkout_keys(session, project_id):
            if key.preferred:
                sealed = SealedValue(key.key_id, key.private_key_ciphertext)
                return self.keyring.open(sealed, checkout_key_context(project_id, key.id))
        return None

    @staticmethod
    async def _audit(
        session: AsyncSession,
        principal: Principal,
        action: str,
        project_id: uuid.UUID,
        org_id: uuid.UUID,
        details: dict[str, Any],
    ) -> None:
        await audit.record(
            session,
            actor_id=principal.user_id,
            actor=principal.login,
            action=action,
            target_type="project",
            target_id=project_id,
            org_id=org_id,
            details=details,
        )


async def add_project_for_operator(
    session: AsyncSession, org: Organization, name: str, vcs_url: str, default_branch: str, rules: RepoRules
) -> dict[str, Any]:
    """``circlet admin project create``: the API's checks but for the operator's reach (local paths),
    errors as ``AccountError``."""
    try:
        check_project_name(name, org.vcs_type)
        check_vcs_url(vcs_url, rules, operator=True)
        check_branch(default_branch)
        if await projects.find_project_by_name(session, org.id, name) is not None:
            raise Conflict(f"A project named '{name}' already exists in this organization.")
        project = await projects.add_project(session, org.id, name, vcs_url, default_branch, repo_set_by_operator=True)
    except ApiError as exc:
        raise AccountError(exc.message) from None
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="project.create",
        target_type="project",
        target_id=project.id,
        org_id=org.id,
        details={"name": name, "vcs_url": vcs_url},
    )
    return project_body(project, org)


async def reseal_env_vars(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-seal up to ``batch`` project variables under the keyring's current key; returns how many.
    Each batch is its own short transaction, so reads and writes go on during a rotation."""
    rows = await projects.env_vars_not_sealed_with(session, keyring.current_id, batch)
    for row in rows:
        context = env_var_context(row.project_id, row.name)
        sealed = keyring.seal(keyring.open(SealedValue(row.key_id, row.ciphertext), context), context)
        row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
    await session.flush()
    return len(rows)


async def reseal_checkout_keys(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-seal up to ``batch`` checkout private keys under the current key; returns how many."""
    rows = await projects.checkout_keys_not_sealed_with(session, keyring.current_id, batch)
    for row in rows:
        context = checkout_key_context(row.project_id, row.id)
        opened = keyring.open(SealedValue(row.key_id, row.private_key_ciphertext), context)
        sealed = keyring.seal(opened, context)
        row.key_id, row.private_key_ciphertext = sealed.key_id, sealed.ciphertext
    await session.flush()
    return len(rows)
