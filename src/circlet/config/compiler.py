"""The config compiler: ``.circleci/config.yml`` + pipeline parameters/values → processed config
and workflow graph (SEMANTICS R-0.1 gives the stage order)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .compiled import CompiledConfig
from .errors import ConfigError, ConfigInvalid, Diagnostics, Location
from .expressions import (
    ExpressionError,
    evaluate,
    evaluate_logic,
    is_logic_statement,
    parse_expression,
    truthy,
)
from .graph import JobNode, WorkflowGraph
from .jobgroups import build_workflow_entries, parse_job_groups, synthetic_job
from .jobs import JobExpander
from .limits import DEFAULT_LIMITS, ExpansionBudget, ExpansionLimits
from .loader import YFloat, YList, YMap, load_yaml, loc_of
from .namespaces import Namespace, did_you_mean, report_broken_orb
from .orbs import OrbNotFound, OrbRegistry, ResolvedOrb, default_orb_dirs, load_orb_file, parse_orb_ref
from .parameters import bind_arguments, check_value, coerce_pipeline_argument, parse_declarations
from .pipeline import PipelineContext, flatten_values
from .templates import Scope, TemplateError, render_string, substitute
from .workflows import (
    Entry,
    assign_names,
    build_entries,
    check_serial_group,
    find_cycle,
    resolve_requires,
)

TOP_LEVEL_21_ONLY = ("setup", "orbs", "commands", "executors", "parameters", "job-groups")
MAX_PIPELINE_PARAMETERS = 100
MAX_PARAMETER_KEY = 128
MAX_PARAMETER_VALUE = 512
MAX_CONTEXTS = 100
IMPLICIT_WORKFLOW = "workflow"


def compile_config(
    source: str,
    *,
    filename: str = "config.yml",
    pipeline_parameters: Mapping[str, Any] | None = None,
    pipeline_values: Mapping[str, Any] | None = None,
    orb_dirs: list[Path] | None = None,
    limits: ExpansionLimits = DEFAULT_LIMITS,
) -> CompiledConfig:
    """Compile a config.  Raises ConfigInvalid carrying every error found, or the first limit
    the config's expansion would pass."""
    document = load_yaml(source, filename)
    if document is None:
        raise ConfigInvalid([ConfigError("config is empty", "", Location(filename, 1, 1))])
    if not isinstance(document, YMap):
        raise ConfigInvalid([ConfigError("config must be a map", "", loc_of(document) or Location(filename, 1, 1))])
    registry = OrbRegistry(default_orb_dirs() if orb_dirs is None else orb_dirs)
    compiler = _Compiler(document, filename, source, registry, limits)
    return compiler.run(dict(pipeline_parameters or {}), flatten_values(pipeline_values or {}))


class _Compiler:
    def __init__(
        self, document: YMap, filename: str, source: str, registry: OrbRegistry, limits: ExpansionLimits
    ) -> None:
        self.doc = document
        self.filename = filename
        self.source = source
        self.registry = registry
        self.diag = Diagnostics(budget=ExpansionBudget(limits))
        self.v21 = False
        self.orb_resolutions: list[tuple[str, str]] = []
        self.orb_cache: dict[Path, Namespace] = {}
        self.orb_loading: set[Path] = set()
        self.output_jobs: dict[str, Any] = {}
        self.expanded_jobs: dict[tuple[int, str, str, str], YMap | None] = {}

    # --- driver ------------------------------------------------------------------------------

    def run(self, parameters: dict[str, Any], values: dict[str, Any]) -> CompiledConfig:
        self.check_version()
        pipeline = PipelineContext(values, self.pipeline_parameters(parameters))
        scope = Scope(pipeline, literal=not self.v21)
        project = self.project_namespace(scope)
        self.expander = JobExpander(self.diag, scope, version_20=not self.v21)
        jobs_section = self.doc.get("jobs")
        job_names = [str(k) for k in jobs_section] if isinstance(jobs_section, dict) else []
        self.groups = parse_job_groups(self.doc.get("job-groups"), job_names, self.diag) if self.v21 else {}
        workflows, skipped, processed_workflows = self.compile_workflows(project, scope)
        setup = self.setup_flag(scope)
        if setup and len(workflows) != 1:
            # CircleCI runs such a config; what it enforces is a single continuation.
            self.diag.warn(
                f"a setup config should run exactly one workflow ({len(workflows)} would run)",
                "setup",
                self.doc.loc("setup"),
            )
        self.diag.raise_if_errors()
        processed: dict[str, Any] = {"version": 2, "jobs": self.output_jobs}
        if processed_workflows is not None:
            processed["workflows"] = processed_workflows
        return CompiledConfig(
            processed, workflows, skipped, self.orb_resolutions, setup, self.source, pipeline, self.diag.warnings
        )

    def setup_flag(self, scope: Scope) -> bool:
        """``setup`` may be templated (``setup: << pipeline.parameters.x >>``)."""
        if "setup" not in self.doc:
            return False
        value = substitute(self.doc["setup"], scope, self.diag, "setup")
        if not isinstance(value, bool):
            self.diag.error("setup must be true or false", "setup", self.doc.loc("setup"))
            return False
        return value

    def check_version(self) -> None:
        version = self.doc.get("version")
        text = str(version) if isinstance(version, str | int | YFloat) and not isinstance(version, bool) else None
        if text not in ("2", "2.0", "2.1"):
            self.diag.error("version must be 2, 2.0 or 2.1", "version", self.doc.loc("version") or self.doc.loc())
            self.diag.raise_if_errors()
        self.v21 = text == "2.1"
        if not self.v21:
            for key in TOP_LEVEL_21_ONLY:
                if key in self.doc:
                    self.diag.error(f"'{key}' requires version 2.1", key, self.doc.loc(key))

    # --- pipeline parameters (R-4) -----------------------------------------------------------

    def pipeline_parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        specs = (
            parse_declarations(self.doc.get("parameters"), "parameters", self.diag, pipeline=True) if self.v21 else {}
        )
        if len(given) > MAX_PIPELINE_PARAMETERS:
            self.diag.error(
                f"at most {MAX_PIPELINE_PARAMETERS} pipeline parameters may be passed", "pipeline parameters"
            )
        values = {name: spec.default for name, spec in specs.items()}
        unexpected = [name for name in given if name not in specs]
        if unexpected:
            self.diag.error(f"Unexpected argument(s): {', '.join(unexpected)}", "pipeline parameters")
        for name, value in given.items():
            spec = specs.get(name)
            if spec is None:
                continue
            where = f"pipeline parameters.{name}"
            if len(name) > MAX_PARAMETER_KEY:
                self.diag.error(f"parameter name longer than {MAX_PARAMETER_KEY} characters", where)
            if isinstance(value, str) and len(value) > MAX_PARAMETER_VALUE:
                self.diag.error(f"parameter value longer than {MAX_PARAMETER_VALUE} characters", where)
            value = coerce_pipeline_argument(spec, value)
            problem = check_value(spec, value)
            if problem:
                self.diag.error(f"pipeline parameter '{name}': {problem}", where)
                continue
            values[name] = value
        return values

    # --- orbs and namespaces (R-12) ----------------------------------------------------------

    def project_namespace(self, scope: Scope) -> Namespace:
        ns = Namespace.from_body(self.doc, "", in_orb=False)
        for kind in ("commands", "executors", "jobs"):
            section = self.doc.get(kind)
            if section is not None and not isinstance(section, dict):
                self.diag.error(f"'{kind}' must be a map", kind, self.doc.loc(kind))
        if self.v21:
            ns.orbs = self.import_orbs(self.doc.get("orbs"), "orbs", scope, in_orb=False)
        return ns

    def import_orbs(self, orbs: Any, path: str, scope: Scope, in_orb: bool, depth: int = 1) -> dict[str, Namespace]:
        imported: dict[str, Namespace] = {}
        if orbs is None:
            return imported
        limit = self.diag.budget.limits.nesting_depth
        if depth > limit:
            self.diag.over_limit("orbs nested in orbs", depth, limit, "nesting_depth", path, loc_of(orbs))
        if not isinstance(orbs, YMap):
            self.diag.error("orbs must be a map of alias to orb reference", path, loc_of(orbs))
            return imported
        for alias, ref in orbs.items():
            where = f"{path}.{alias}"
            loc = orbs.loc(alias)
            if isinstance(ref, YMap):
                ns = Namespace.from_body(ref, where, in_orb=True)
                ns.orbs = self.import_orbs(ref.get("orbs"), f"{where}.orbs", scope, in_orb=True, depth=depth + 1)
                imported[alias] = ns
                continue
            if not isinstance(ref, str):
                self.diag.error("an orb reference must be a string or an inline orb map", where, loc)
                continue
            text = self.render_orb_ref(ref, scope, in_orb, where, loc)
            diag = Diagnostics() if in_orb else self.diag
            ns_or_none = self.load_orb(text, where, loc, scope, diag, depth) if text is not None else None
            if ns_or_none is None:
                problem = "; ".join(e.message for e in diag.errors) if in_orb else ""
                ns_or_none = Namespace(where, in_orb=True, broken=True, problem=problem)
            imported[alias] = ns_or_none
        return imported

    def render_orb_ref(self, ref: str, scope: Scope, in_orb: bool, where: str, loc: Location | None) -> str | None:
        orb_scope = Scope(scope.pipeline, None, in_orb)
        try:
            rendered = render_string(ref, orb_scope)
        except TemplateError as exc:
            self.diag.error(str(exc), where, loc)
            return None
        return rendered if isinstance(rendered, str) else str(rendered)

    def load_orb(
        self, text: str, where: str, loc: Location | None, scope: Scope, diag: Diagnostics, depth: int
    ) -> Namespace | None:
        """Resolve and read one orb; problems go to ``diag`` (a private one for orbs imported
        by orbs, which are only reported if something uses them)."""
        try:
            if text.startswith(("https://", "http://")):
                resolved = self.registry.resolve_url(text)
            else:
                parsed = parse_orb_ref(text)
                if parsed is None:
                    diag.error(f"invalid orb reference '{text}' (expected namespace/name@version)", where, loc)
                    return None
                resolved = self.registry.resolve(parsed)
        except OrbNotFound as exc:
            diag.error(str(exc), where, loc)
            return None
        self.note_resolution(resolved)
        cached = self.orb_cache.get(resolved.path)
        if cached is not None:
            return cached
        if resolved.path in self.orb_loading:
            diag.error(f"orb '{resolved.resolved}' imports itself", where, loc)
            return None
        return self.read_orb(resolved, where, loc, scope, diag, depth)

    def note_resolution(self, resolved: ResolvedOrb) -> None:
        pair = (resolved.requested, resolved.resolved)
        if pair not in self.orb_resolutions:
            self.orb_resolutions.append(pair)

    def read_orb(
        self, resolved: ResolvedOrb, where: str, loc: Location | None, scope: Scope, diag: Diagnostics, depth: int
    ) -> Namespace | None:
        try:
            body = load_orb_file(resolved.path, resolved.resolved)
        except ConfigInvalid as exc:
            for err in exc.errors:
                diag.error(f"in orb '{resolved.resolved}': {err.format()}", where, loc)
            return None
        except OSError as exc:
            diag.error(f"cannot read orb '{resolved.resolved}': {exc}", where, loc)
            return None
        if not isinstance(body, YMap):
            diag.error(f"orb '{resolved.resolved}' is not a map", where, loc)
            return None
        if "workflows" in body:
            diag.error(f"orb '{resolved.resolved}' is invalid: orbs cannot define workflows", where, loc)
        ns = Namespace.from_body(body, where, in_orb=True)
        self.orb_loading.add(resolved.path)
        ns.orbs = self.import_orbs(body.get("orbs"), f"{where}.orbs", scope, in_orb=True, depth=depth + 1)
        self.orb_loading.discard(resolved.path)
        self.orb_cache[resolved.path] = ns
        return ns

    # --- workflows (R-9) ---------------------------------------------------------------------

    def compile_workflows(
        self, project: Namespace, scope: Scope
    ) -> tuple[list[WorkflowGraph], list[str], dict[str, Any] | None]:
        raw = self.doc.get("workflows")
        if raw is None:
            return self.implicit_workflow(project, scope)
        if not isinstance(raw, YMap):
            self.diag.error("workflows must be a map", "workflows", self.doc.loc("workflows"))
            return [], [], None
        if not self.v21 and "version" not in raw:
            self.diag.error(
                "a version 2.0 config needs 'workflows: version: 2'", "workflows", self.doc.loc("workflows")
            )
        graphs: list[WorkflowGraph] = []
        skipped: list[str] = []
        output: dict[str, Any] = {}
        contexts: set[str] = set()
        for name, body in raw.items():
            if name == "version":
                output["version"] = 2
                continue
            path = f"workflows.{name}"
            if not isinstance(body, YMap) or not isinstance(body.get("jobs"), list):
                self.diag.error("a workflow needs a list of 'jobs'", path, raw.loc(name))
                continue
            runs = self.workflow_runs(body, path, scope)
            graph, entries_out = self.compile_workflow(name, body, path, project, scope, runs)
            for node in graph.jobs:
                contexts.update(node.context)
            if not runs:
                skipped.append(name)
                continue
            graphs.append(graph)
            output[name] = self.workflow_output(body, entries_out)
        if len(contexts) > MAX_CONTEXTS:
            self.diag.error(
                f"more than {MAX_CONTEXTS} distinct contexts are used", "workflows", self.doc.loc("workflows")
            )
        if "version" not in output:
            output["version"] = 2
        return graphs, skipped, output

    def implicit_workflow(
        self, project: Namespace, scope: Scope
    ) -> tuple[list[WorkflowGraph], list[str], dict[str, Any] | None]:
        """No ``workflows``: a job named ``build`` runs on its own (R-2.5)."""
        if "build" not in project.jobs:
            self.diag.error("no workflows and no job named 'build': nothing to run", "workflows", self.doc.loc())
            return [], [], None
        raw = YList(self.filename)
        raw.append("build")
        entries = build_entries(raw, f"workflows.{IMPLICIT_WORKFLOW}", scope, self.diag)
        nodes = [self.compile_entry(e, project, scope, store=True) for e in entries]
        return [WorkflowGraph(IMPLICIT_WORKFLOW, [n for n in nodes if n is not None])], [], None

    def workflow_runs(self, body: YMap, path: str, scope: Scope) -> bool:
        runs = True
        for kind in ("when", "unless"):
            if kind not in body:
                continue
            if not self.v21:
                self.diag.error(f"'{kind}' requires version 2.1", f"{path}.{kind}", body.loc(kind))
                continue
            value = substitute(body[kind], scope, self.diag, f"{path}.{kind}")
            try:
                result = self.evaluate_condition(value, scope)
            except ExpressionError as exc:
                self.diag.error(exc.message, f"{path}.{kind}", body.loc(kind))
                continue
            runs = runs and (result if kind == "when" else not result)
        return runs

    @staticmethod
    def evaluate_condition(value: Any, scope: Scope) -> bool:
        """A logic statement, a substituted value, or a bare expression (R-9.2).  A
        ``condition:`` wrapper (the step form) is accepted too."""
        if isinstance(value, dict) and set(value) == {"condition"}:
            value = value["condition"]
        if is_logic_statement(value) or isinstance(value, dict):
            return evaluate_logic(value)
        if isinstance(value, str) and ("pipeline." in value or value.strip().startswith(("not ", "("))):
            return truthy(evaluate(parse_expression(value), scope.lookup))
        return truthy(value)

    def compile_workflow(
        self, name: str, body: YMap, path: str, project: Namespace, scope: Scope, runs: bool
    ) -> tuple[WorkflowGraph, list[Any]]:
        """Expand the jobs of a running workflow into the processed ``jobs``; for a workflow that
        does not run, check its entries, requires and arguments only."""
        entries = build_workflow_entries(body["jobs"], path, scope, self.groups, self.diag)
        assign_names(entries, path, self.diag)
        resolve_requires(entries, self.diag)
        cycle = find_cycle(entries)
        if cycle:
            first = next(e for e in entries if e.name == cycle[0])
            self.diag.error(f"requires cycle: {' -> '.join(cycle)}", f"{path}.jobs", first.loc)
        nodes: list[JobNode] = []
        out_entries: list[Any] = []
        for entry in entries:
            node = self.compile_entry(entry, project, scope, store=runs)
            if node is None:
                continue
            nodes.append(node)
            out_entries.append(self.entry_output(entry, node))
        reruns = body.get("max_auto_reruns")
        graph = WorkflowGraph(name, nodes, body.get("triggers"), reruns if isinstance(reruns, int) else None)
        return graph, out_entries

    def compile_entry(self, entry: Entry, project: Namespace, scope: Scope, store: bool) -> JobNode | None:
        self.check_entry(entry)
        context = _context_list(entry.args.get("context"))
        filters = entry.args.get("filters", entry.group_filters)
        serial_group = entry.args.get("serial-group")
        common: dict[str, Any] = dict(
            requires=entry.requires,
            context=context,
            filters=filters,
            serial_group=serial_group if isinstance(serial_group, str) else None,
            matrix=entry.matrix,
        )
        if entry.synthetic is not None:
            # A job group's boundary job: stepless, kept in the processed ``jobs``.
            job_def = synthetic_job(entry)
            key = self.store_job(entry, job_def) if store else None
            common["serial_group"] = entry.serial_group
            return JobNode(entry.name, key, entry.synthetic, **common)
        if entry.type == "approval":
            if project.find("jobs", entry.name) is not None and entry.name != entry.ref:
                self.diag.error(f"approval job '{entry.name}' has the name of a job in 'jobs'", entry.path, entry.loc)
            return JobNode(entry.name, None, "approval", **common)
        ref = self.override_target(entry, project) or entry.ref
        found = project.find("jobs", ref)
        if found is None:
            if not report_broken_orb(project, ref, self.diag, entry.path, entry.loc):
                hint = did_you_mean(ref, project.candidates("jobs"))
                self.diag.error(f"job '{ref}' is not defined{hint}", entry.path, entry.loc)
            return None
        definition, home, local = found
        if not isinstance(definition, YMap):
            self.diag.error(f"job '{ref}' must be a map", home.path_of("jobs", local), loc_of(definition) or entry.loc)
            return None
        if not self.v21 and entry.job_arguments():
            self.diag.error("job parameters require version 2.1", entry.path, entry.loc)
            return None
        if not store:
            self.check_arguments(entry, definition, home, local)
            return JobNode(entry.name, None, "build", **common)
        job = self.expand_entry_job(entry, definition, home, local, project, scope)
        if job is None:
            return None
        job_type = job.get("type", "build")
        key = self.store_job(entry, job) if store else None
        executor = {k: v for k, v in job.items() if k not in ("steps", "type", "environment")}
        if job_type in ("lock", "unlock"):
            # A lock/unlock job (a serialised job group's boundary, R-11.2): ``key`` is the lock.
            lock_key = executor.pop("key", None)
            common["serial_group"] = lock_key if isinstance(lock_key, str) else None
        steps = job.get("steps", [])
        return JobNode(
            entry.name,
            key,
            job_type if isinstance(job_type, str) else "build",
            executor=executor,
            steps=steps if isinstance(steps, list) else [],
            **common,
        )

    def check_arguments(self, entry: Entry, definition: YMap, home: Namespace, local: str) -> None:
        """For a workflow that does not run: check the arguments without expanding the job."""
        specs = self.expander.specs_of(definition, home.path_of("jobs", local), job=True)
        bind_arguments(specs, entry.job_arguments(), f"job '{entry.name}'", entry.path, entry.loc, self.diag)

    def expand_entry_job(
        self, entry: Entry, definition: YMap, home: Namespace, local: str, project: Namespace, scope: Scope
    ) -> YMap | None:
        """Expand the entry's job; identical invocations (same job, arguments, pre/post steps,
        as is common across workflows) are expanded once."""
        arguments = entry.job_arguments()
        key = (id(definition), repr(arguments), repr(entry.args.get("pre-steps")), repr(entry.args.get("post-steps")))
        if key in self.expanded_jobs:
            return self.expanded_jobs[key]
        extra = (
            self.entry_steps(entry, "pre-steps", project, scope),
            self.entry_steps(entry, "post-steps", project, scope),
        )
        job = self.expander.expand_job(
            definition, home, local, entry.name, arguments, project, scope, extra, entry.path, entry.loc
        )
        self.expanded_jobs[key] = job
        return job

    def check_entry(self, entry: Entry) -> None:
        if not self.v21:
            for key in ("matrix", "pre-steps", "post-steps", "override-with"):
                if key in entry.args:
                    self.diag.error(f"'{key}' requires version 2.1", entry.path, entry.loc)
        job_type = entry.args.get("type")
        if job_type is not None and job_type != "approval":
            self.diag.error(
                f"type '{job_type}' is not allowed on a workflow job entry (only 'approval')",
                f"{entry.path}.type",
                entry.loc,
            )
        if "serial-group" in entry.args:
            check_serial_group(entry.args["serial-group"], f"{entry.path}.serial-group", entry.loc, self.diag)
        context = entry.args.get("context")
        if (
            context is not None
            and not isinstance(context, str)
            and not (isinstance(context, list) and all(isinstance(c, str) for c in context))
        ):
            self.diag.error("context must be a string or a list of strings", f"{entry.path}.context", entry.loc)
        filters = entry.args.get("filters")
        if filters is not None and not isinstance(filters, dict | str):
            self.diag.error("filters must be a map or an expression", f"{entry.path}.filters", entry.loc)
        if isinstance(filters, str):
            try:
                parse_expression(filters)
            except ExpressionError as exc:
                self.diag.error(f"invalid filter expression: {exc.message}", f"{entry.path}.filters", entry.loc)

    @staticmethod
    def override_target(entry: Entry, project: Namespace) -> str | None:
        target = entry.args.get("override-with")
        if isinstance(target, str) and project.find("jobs", target) is not None:
            return target
        return None

    def entry_steps(self, entry: Entry, key: str, project: Namespace, scope: Scope) -> list[Any]:
        steps = entry.args.get(key)
        if steps is None:
            return []
        if not isinstance(steps, list):
            self.diag.error(f"'{key}' must be a list of steps", f"{entry.path}.{key}", entry.loc)
            return []
        return self.expander.expand_steps(steps, project, scope, f"{entry.path}.{key}", ())

    def store_job(self, entry: Entry, job: dict[str, Any]) -> str:
        """Key the expanded job in the processed ``jobs`` by the entry's name; an identical job
        is shared, a different one under the same name gets a numeric suffix."""
        base = entry.name if self.v21 else entry.ref
        key = base
        number = 1
        while key in self.output_jobs and self.output_jobs[key] != job:
            number += 1
            key = f"{base}-{number}"
        self.output_jobs[key] = job
        return key

    # --- processed output ----------------------------------------------------------------------

    @staticmethod
    def entry_output(entry: Entry, node: JobNode) -> Any:
        attrs: dict[str, Any] = {}
        key = node.job if node.job is not None else node.name
        if key != node.name:
            attrs["name"] = node.name
        if entry.requires:
            attrs["requires"] = [_requirement_output(n, s) for n, s in entry.requires.items()]
        for name in ("context", "filters", "serial-group"):
            if name in entry.args:
                attrs[name] = entry.args[name]
        if "filters" not in entry.args and entry.group_filters is not None:
            attrs["filters"] = entry.group_filters
        if node.type == "approval":
            attrs["type"] = "approval"
        return {key: attrs} if attrs else key

    @staticmethod
    def workflow_output(body: YMap, entries: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("triggers", "max_auto_reruns"):
            if key in body:
                out[key] = body[key]
        out["jobs"] = entries
        return out


def _context_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _requirement_output(name: str, statuses: tuple[str, ...]) -> Any:
    if statuses == ("success",):
        return name
    return {name: statuses[0] if len(statuses) == 1 else list(statuses)}
