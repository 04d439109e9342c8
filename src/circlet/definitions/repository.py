"""Queries on pipeline definitions and their triggers."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import PipelineDefinition, PipelineTrigger, TriggerWebhookSecret


async def definitions_of(session: AsyncSession, project_id: uuid.UUID) -> list[PipelineDefinition]:
    query = (
        select(PipelineDefinition)
        .where(PipelineDefinition.project_id == project_id)
        .order_by(PipelineDefinition.created_at, PipelineDefinition.id)
    )
    return list((await session.execute(query)).scalars())


async def get_definition(
    session: AsyncSession, project_id: uuid.UUID, definition_id: uuid.UUID
) -> PipelineDefinition | None:
    definition = await session.get(PipelineDefinition, definition_id)
    return definition if definition is not None and definition.project_id == project_id else None


async def add(session: AsyncSession, row: PipelineDefinition | PipelineTrigger) -> None:
    session.add(row)
    await session.flush()


async def delete_definition(session: AsyncSession, definition_id: uuid.UUID) -> None:
    triggers = select(PipelineTrigger.id).where(PipelineTrigger.definition_id == definition_id)
    await session.execute(delete(TriggerWebhookSecret).where(TriggerWebhookSecret.trigger_id.in_(triggers)))
    await session.execute(delete(PipelineTrigger).where(PipelineTrigger.definition_id == definition_id))
    await session.execute(delete(PipelineDefinition).where(PipelineDefinition.id == definition_id))


async def triggers_of(session: AsyncSession, definition_id: uuid.UUID) -> list[PipelineTrigger]:
    query = (
        select(PipelineTrigger)
        .where(PipelineTrigger.definition_id == definition_id)
        .order_by(PipelineTrigger.created_at, PipelineTrigger.id)
    )
    return list((await session.execute(query)).scalars())


async def get_trigger(session: AsyncSession, project_id: uuid.UUID, trigger_id: uuid.UUID) -> PipelineTrigger | None:
    trigger = await session.get(PipelineTrigger, trigger_id)
    return trigger if trigger is not None and trigger.project_id == project_id else None


async def delete_trigger(session: AsyncSession, trigger_id: uuid.UUID) -> None:
    await session.execute(delete(TriggerWebhookSecret).where(TriggerWebhookSecret.trigger_id == trigger_id))
    await session.execute(delete(PipelineTrigger).where(PipelineTrigger.id == trigger_id))


async def add_webhook_secret(session: AsyncSession, trigger_id: uuid.UUID, key_id: str, ciphertext: bytes) -> None:
    session.add(TriggerWebhookSecret(trigger_id=trigger_id, key_id=key_id, ciphertext=ciphertext))
    await session.flush()


async def get_webhook_secret(session: AsyncSession, trigger_id: uuid.UUID) -> TriggerWebhookSecret | None:
    return await session.get(TriggerWebhookSecret, trigger_id)


async def find_trigger(session: AsyncSession, trigger_id: uuid.UUID) -> PipelineTrigger | None:
    return await session.get(PipelineTrigger, trigger_id)
