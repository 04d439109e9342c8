"""Rows the engine would write for finished runs, with chosen times and statuses: the fixture loader of
the Insights tests (and of bench/insights.py, which writes the same shapes in bulk)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import Job, Pipeline, Project, TestResult, Workflow


@dataclass
class Seeder:
    session: AsyncSession
    project_id: uuid.UUID
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    job_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def run(
        self,
        name: str,
        status: str,
        created_at: datetime,
        seconds: float | None,
        *,
        branch: str = "main",
        revision: str | None = None,
        jobs: dict[str, str] | None = None,
        resource_class: str = "medium",
        parallelism: int = 2,
        tests: dict[str, list[tuple[str, str, float]]] | None = None,
    ) -> Workflow:
        """A pipeline with one workflow run; each job (name → status) runs the workflow's whole time;
        ``tests`` by job name: (classname, name, result, run_time)... as (classname.name, result, run_time)."""
        stopped = created_at + timedelta(seconds=seconds) if seconds is not None else None
        number = next(self.numbers)
        pipeline = Pipeline(
            project_id=self.project_id,
            number=number,
            state="created",
            branch=branch,
            revision=revision or f"{number:040x}",
            created_at=created_at,
            updated_at=created_at,
        )
        self.session.add(pipeline)
        await self.session.flush()
        workflow = Workflow(
            pipeline_id=pipeline.id,
            project_id=self.project_id,
            name=name,
            status=status,
            created_at=created_at,
            stopped_at=stopped,
        )
        self.session.add(workflow)
        await self.session.flush()
        for job_name, job_status in (jobs or {"test": status}).items():
            job = Job(
                workflow_id=workflow.id,
                pipeline_id=pipeline.id,
                project_id=self.project_id,
                name=job_name,
                type="approval" if job_status == "approval" else "build",
                number=None if job_status == "approval" else next(self.job_numbers),
                status="success" if job_status == "approval" else job_status,
                parallelism=parallelism,
                resource_class=resource_class,
                created_at=created_at,
                queued_at=created_at,
                started_at=created_at,
                stopped_at=stopped,
            )
            self.session.add(job)
            await self.session.flush()
            for full_name, result, run_time in (tests or {}).get(job_name, []):
                classname, _, test_name = full_name.rpartition(".")
                self.session.add(
                    TestResult(
                        job_id=job.id,
                        project_id=self.project_id,
                        source="junit",
                        run_time=run_time,
                        file=f"{classname.replace('.', '/')}.py",
                        result=result,
                        name=test_name,
                        classname=classname,
                        created_at=stopped or created_at,
                    )
                )
        await self.session.flush()
        return workflow


async def add_project(session: AsyncSession, org_id: str, name: str = "app") -> Project:
    project = Project(org_id=uuid.UUID(org_id), name=name, name_key=name.lower(), default_branch="main")
    session.add(project)
    await session.flush()
    return project
