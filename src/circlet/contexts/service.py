"""What may be done with contexts, by whom, within which limits.

Roles (docs/compatibility.md): any member of the owning organization (viewer, member, admin) reads
contexts, their variable names and their restrictions; only admins create and delete contexts, write
variables and change restrictions; anyone else gets 404, exactly as for a context that does not exist.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import ROLE_ADMIN, Principal
from circlet.contexts import repository as contexts
from circlet.contexts.expressions import ExpressionError, parse_restriction_expression
from circlet.contexts.schemas import ContextOwner, CreateRestriction
from circlet.db.dialect import Executor
from circlet.db.models import Context
from circlet.groups import repository as groups
from circlet.http.errors import BadRequest, Conflict, Forbidden, NotFound
from circlet.http.pagination import PageTokens
from circlet.http.responses import timestamp
from circlet.http.text import check_single_line_name
from circlet.orgs import repository as orgs
from circlet.orgs.slugs import parse_org_slug
from circlet.projects import repository as projects
from circlet.secrets import Keyring, SealedValue
from circlet.settings import Limits

PAGE_SIZE = 20
ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_var_context(context_id: uuid.UUID, name: str) -> str:
    """Associated data binding a sealed value to its row."""
    return f"context-env-var:{context_id}:{name}"


def context_body(context_id: uuid.UUID, name: str, created_at: Any) -> dict[str, Any]:
    return {"id": context_id, "name": name, "created_at": timestamp(created_at)}


def restriction_body(restriction: Any) -> dict[str, Any]:
    body = {
        "id": restriction.id,
        "name": restriction.name,
        "restriction_type": restriction.restriction_type,
        "restriction_value": restriction.restriction_value,
    }
    if restriction.restriction_type == "project":
        body["project_id"] = restriction.restriction_value
    return body


@dataclass
class ContextService:
    keyring: Keyring
    limits: Limits
    page_tokens: PageTokens

    # -- contexts ---------------------------------------------------------------------------------

    async def list_contexts(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        owner_id: uuid.UUID | None,
        owner_slug: str | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        org_id = await self._owner_org(session, principal, owner_id, owner_slug)
        scope = f"contexts:{org_id}"
        after = self._context_position(page_token, scope) if page_token else None
        rows = await contexts.list_contexts(session, org_id, after, PAGE_SIZE + 1)
        items = [{"id": id_, "name": name, "created_at": stamp} for id_, name, stamp, _ in rows[:PAGE_SIZE]]
        next_token = None
        if len(rows) > PAGE_SIZE:
            last_id, _, _, last_created = rows[PAGE_SIZE - 1]
            last_time = contexts.position_time(session, last_created)
            next_token = self.page_tokens.encode(scope, [last_time.isoformat(), str(last_id)])
        return {"items": items, "next_page_token": next_token}

    async def create_context(
        self, session: AsyncSession, principal: Principal, name: str, owner: ContextOwner
    ) -> dict[str, Any]:
        org_id = await self._owner_org(session, principal, owner.id, owner.slug)
        self._require_admin(principal, org_id)
        self._check_context_name(name)
        if await contexts.count_contexts(session, org_id) >= self.limits.contexts_per_org:
            raise BadRequest(f"The organization already has {self.limits.contexts_per_org} contexts, the most allowed.")
        if await contexts.find_context_by_name(session, org_id, name) is not None:
            raise Conflict(f"A context named '{name}' already exists in this organization.")
        try:
            context = await contexts.add_context(session, org_id, name)
        except contexts.DuplicateName:
            raise Conflict(f"A context named '{name}' already exists in this organization.") from None
        await self._audit(session, principal, "context.create", "context", context.id, org_id, {"name": name})
        return context_body(context.id, context.name, context.created_at)

    async def get_context(self, session: AsyncSession, principal: Principal, context_id: uuid.UUID) -> Context:
        context = await contexts.get_context(session, context_id)
        if context is None or principal.role_in(context.org_id) is None:
            raise NotFound("Context not found.")
        return context

    async def delete_context(self, session: AsyncSession, principal: Principal, context_id: uuid.UUID) -> None:
        context = await self._writable_context(session, principal, context_id)
        await contexts.delete_context(session, context_id)
        await self._audit(
            session, principal, "context.delete", "context", context_id, context.org_id, {"name": context.name}
        )

    # -- environment variables --------------------------------------------------------------------

    async def list_env_vars(
        self, session: AsyncSession, principal: Principal, context_id: uuid.UUID, page_token: str | None
    ) -> dict[str, Any]:
        await self.get_context(session, principal, context_id)
        scope = f"env-vars:{context_id}"
        after = self.page_tokens.decode(page_token, scope)[0] if page_token else None
        if after is not None and not isinstance(after, str):
            raise BadRequest("page-token is invalid.")
        rows = await contexts.list_env_vars(session, context_id, after, PAGE_SIZE + 1)
        items = [
            {
                "variable": row.name,
                "created_at": timestamp(row.created_at),
                "updated_at": timestamp(row.updated_at),
                "context_id": context_id,
            }
            for row in rows[:PAGE_SIZE]
        ]
        next_token = self.page_tokens.encode(scope, [rows[PAGE_SIZE - 1].name]) if len(rows) > PAGE_SIZE else None
        return {"items": items, "next_page_token": next_token}

    async def put_env_var(
        self, session: Executor, principal: Principal, context_id: uuid.UUID, name: str, value: str
    ) -> dict[str, Any]:
        org_id = await self._writable_context_org(session, principal, context_id)
        self._check_env_var(name, value)
        exists = await contexts.env_var_exists(session, context_id, name)
        if not exists and await contexts.count_env_vars(session, context_id) >= self.limits.env_vars_per_context:
            raise BadRequest(
                f"The context already has {self.limits.env_vars_per_context} environment variables, the most allowed."
            )
        sealed = self.keyring.seal(value, env_var_context(context_id, name))
        stamp = await contexts.upsert_env_var(session, context_id, name, sealed.key_id, sealed.ciphertext)
        await self._audit(
            session,
            principal,
            "context.env_var.update" if exists else "context.env_var.create",
            "context",
            context_id,
            org_id,
            {"variable": name},
        )
        return {
            "variable": name,
            "created_at": timestamp(stamp.created_at),
            "updated_at": timestamp(stamp.updated_at),
            "context_id": context_id,
        }

    async def delete_env_var(
        self, session: AsyncSession, principal: Principal, context_id: uuid.UUID, name: str
    ) -> None:
        context = await self._writable_context(session, principal, context_id)
        if not await contexts.delete_env_var(session, context_id, name):
            raise NotFound("Environment variable not found.")
        await self._audit(
            session, principal, "context.env_var.delete", "context", context_id, context.org_id, {"variable": name}
        )

    async def env_var_values(self, session: AsyncSession, context_id: uuid.UUID) -> dict[str, str]:
        """The plaintext variables of a context, for a job about to run; never for a response."""
        return {
            row.name: self.keyring.open(SealedValue(row.key_id, row.ciphertext), env_var_context(context_id, row.name))
            for row in await contexts.sealed_env_vars(session, context_id)
        }

    # -- restrictions -----------------------------------------------------------------------------

    async def list_restrictions(
        self, session: AsyncSession, principal: Principal, context_id: uuid.UUID, page_token: str | None
    ) -> dict[str, Any]:
        await self.get_context(session, principal, context_id)
        scope = f"restrictions:{context_id}"
        after = self._position(page_token, scope) if page_token else None
        rows = await contexts.list_restrictions(session, context_id, after, PAGE_SIZE + 1)
        items = [{"context_id": context_id, **restriction_body(r)} for r in rows[:PAGE_SIZE]]
        next_token = None
        if len(rows) > PAGE_SIZE:
            last = rows[PAGE_SIZE - 1]
            next_token = self.page_tokens.encode(scope, [last.created_at.isoformat(), str(last.id)])
        return {"items": items, "next_page_token": next_token}

    async def create_restriction(
        self, session: AsyncSession, principal: Principal, context_id: uuid.UUID, body: CreateRestriction
    ) -> dict[str, Any]:
        context = await self._writable_context(session, principal, context_id)
        if body.restriction_type is None:
            raise BadRequest("restriction_type: required field is missing (project, expression or group).")
        if body.restriction_value is None or not body.restriction_value.strip():
            raise BadRequest("restriction_value: required field is missing.")
        value, name = await self._restriction_target(session, context, body.restriction_type, body.restriction_value)
        try:
            restriction = await contexts.add_restriction(session, context_id, body.restriction_type, value, name)
        except contexts.DuplicateName:
            raise Conflict("The context already has this restriction.") from None
        await self._audit(
            session,
            principal,
            "context.restriction.create",
            "context",
            context_id,
            context.org_id,
            {"restriction_id": str(restriction.id), "type": body.restriction_type, "value": value},
        )
        return restriction_body(restriction)

    async def delete_restriction(
        self, session: AsyncSession, principal: Principal, context_id: uuid.UUID, restriction_id: uuid.UUID
    ) -> None:
        context = await self._writable_context(session, principal, context_id)
        restriction = await contexts.get_restriction(session, context_id, restriction_id)
        if restriction is None:
            raise NotFound("Restriction not found.")
        await contexts.delete_restriction(session, restriction_id)
        await self._audit(
            session,
            principal,
            "context.restriction.delete",
            "context",
            context_id,
            context.org_id,
            {"restriction_id": str(restriction_id), "type": restriction.restriction_type},
        )

    async def _restriction_target(
        self, session: AsyncSession, context: Context, restriction_type: str, value: str
    ) -> tuple[str, str]:
        """The value as stored and the name reported with it; 400 when the target is not usable."""
        if restriction_type == "expression":
            try:
                parse_restriction_expression(value)
            except ExpressionError as exc:
                raise BadRequest(f"restriction_value: invalid expression at column {exc.column}: {exc}") from None
            return value, ""
        try:
            target_id = uuid.UUID(value)
        except ValueError:
            raise BadRequest(f"restriction_value: a {restriction_type} restriction takes a UUID.") from None
        if restriction_type == "project":
            project = await projects.get_project(session, target_id)
            if project is None or project.org_id != context.org_id:
                raise BadRequest("restriction_value: no such project in the context's organization.")
            return str(target_id), project.name
        group = await groups.get_group(session, target_id)
        if group is None or group.org_id != context.org_id:
            raise BadRequest("restriction_value: no such group in the context's organization.")
        return str(target_id), group.name

    # -- shared checks ----------------------------------------------------------------------------

    async def _owner_org(
        self, session: AsyncSession, principal: Principal, owner_id: uuid.UUID | None, owner_slug: str | None
    ) -> uuid.UUID:
        """The organization that owns the listing; 404 for one the caller does not belong to."""
        if owner_id is not None:
            if principal.role_in(owner_id) is None:
                raise NotFound("Owner not found.")
            return owner_id
        if owner_slug is not None:
            slug = parse_org_slug(owner_slug)
            if slug is None:
                raise BadRequest(
                    "owner-slug is invalid: expected gh/NAME, github/NAME, bb/NAME, bitbucket/NAME "
                    "or circleci/ORG-UUID."
                )
            org = await orgs.find_org_by_slug(session, slug)
            if org is None or principal.role_in(org.id) is None:
                raise NotFound("Owner not found.")
            return org.id
        if len(principal.roles) == 1:
            return next(iter(principal.roles))
        raise BadRequest(
            "owner-id or owner-slug is required: you belong to "
            f"{len(principal.roles)} organizations, so the owner cannot be inferred."
        )

    def _context_position(self, page_token: str, scope: str) -> tuple[datetime, uuid.UUID]:
        """``_position`` for the context list, the hot one, with the time naive UTC: what the tokens
        we issue hold (``isoformat`` of an aware UTC time, a canonical UUID) is read without
        ``uuid.UUID``'s parsing of every spelling, nor the query's conversion of an aware time back to
        UTC, which together cost as much as verifying the token. The same rows, and the same 400s:
        anything else takes ``_position``."""
        position = self.page_tokens.decode(page_token, scope)
        if len(position) == 2:
            created, last_id = position
            if (
                type(created) is str
                and type(last_id) is str
                and created.endswith("+00:00")
                and len(last_id) == 36
                and last_id[8] == last_id[13] == last_id[18] == last_id[23] == "-"
            ):
                digits = last_id.replace("-", "")
                try:
                    naive = datetime.fromisoformat(created[:-6])
                    value = int(digits, 16)  # as uuid.UUID parses it, once the dashes are gone
                except ValueError:
                    raise BadRequest("page-token is invalid.") from None
                if naive.tzinfo is None and len(digits) == 32:
                    return naive, uuid.UUID(int=value)
        return self._checked_position(position)

    def _position(self, page_token: str, scope: str) -> tuple[datetime, uuid.UUID]:
        return self._checked_position(self.page_tokens.decode(page_token, scope))

    @staticmethod
    def _checked_position(position: list[Any]) -> tuple[datetime, uuid.UUID]:
        try:
            return datetime.fromisoformat(position[0]), uuid.UUID(position[1])
        except (ValueError, TypeError, IndexError):
            raise BadRequest("page-token is invalid.") from None

    def _require_admin(self, principal: Principal, org_id: uuid.UUID) -> None:
        role = principal.role_in(org_id)
        if role is None:
            raise NotFound("Owner not found.")
        if role != ROLE_ADMIN:
            raise Forbidden("Permission denied: only organization admins may change contexts.")

    async def _writable_context(self, session: AsyncSession, principal: Principal, context_id: uuid.UUID) -> Context:
        context = await self.get_context(session, principal, context_id)
        if principal.role_in(context.org_id) != ROLE_ADMIN:
            raise Forbidden("Permission denied: only organization admins may change contexts.")
        return context

    async def _writable_context_org(self, session: Executor, principal: Principal, context_id: uuid.UUID) -> uuid.UUID:
        """``_writable_context`` reading only the owner, in one fixed query: for writing a variable."""
        org_id = await contexts.context_org(session, context_id)
        if org_id is None or principal.role_in(org_id) is None:
            raise NotFound("Context not found.")
        if principal.role_in(org_id) != ROLE_ADMIN:
            raise Forbidden("Permission denied: only organization admins may change contexts.")
        return org_id

    def _check_context_name(self, name: str) -> None:
        limit = self.limits.context_name_length
        if not name or len(name) > limit:
            raise BadRequest(f"name: a context name has 1 to {limit} characters.")
        check_single_line_name(name, "name")
        if name != name.strip():
            raise BadRequest("name: a context name may not begin or end with whitespace.")

    def _check_env_var(self, name: str, value: str) -> None:
        if len(name) > self.limits.env_var_name_length:
            raise BadRequest(
                f"env_var_name: longer than {self.limits.env_var_name_length} characters, the most allowed."
            )
        check_single_line_name(name, "env_var_name")
        if not ENV_VAR_NAME.fullmatch(name):
            raise BadRequest(
                "env_var_name: must start with a letter or underscore and contain only letters, digits and underscores."
            )
        if len(value) > self.limits.env_var_value_length:
            raise BadRequest(f"value: longer than {self.limits.env_var_value_length} characters, the most allowed.")

    async def _audit(
        self,
        session: Executor,
        principal: Principal,
        action: str,
        target_type: str,
        target_id: uuid.UUID,
        org_id: uuid.UUID,
        details: dict[str, Any],
    ) -> None:
        await audit.record(
            session,
            actor_id=principal.user_id,
            actor=principal.login,
            action=action,
            target_type=target_type,
            target_id=target_id,
            org_id=org_id,
            details=details,
        )


async def reseal_env_vars(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-seal up to ``batch`` context variables under the keyring's current key; returns how many.
    Each batch is its own short transaction, so reads and writes go on during a rotation."""
    rows = await contexts.env_vars_not_sealed_with(session, keyring.current_id, batch)
    for row in rows:
        context = env_var_context(row.context_id, row.name)
        plaintext = keyring.open(SealedValue(row.key_id, row.ciphertext), context)
        sealed = keyring.seal(plaintext, context)
        row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
    await session.flush()
    return len(rows)
