"""Expansion of jobs, executors and steps (SEMANTICS R-7): argument binding, substitution,
executor merging, command splicing and conditional steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import Diagnostics, Location
from .expressions import ExpressionError, evaluate_logic
from .loader import YList, YMap, loc_of
from .namespaces import Namespace, did_you_mean, report_broken_orb
from .parameters import ParameterSpec, bind_arguments, parse_declarations
from .templates import Scope, substitute

BUILTIN_STEPS = frozenset(
    {
        "run",
        "checkout",
        "setup_remote_docker",
        "save_cache",
        "restore_cache",
        "store_artifacts",
        "store_test_results",
        "persist_to_workspace",
        "attach_workspace",
        "add_ssh_keys",
        "install_signing_bundle",
        "deploy",
    }
)
SPECIAL_STEPS = frozenset({"when", "unless", "steps"})
EXECUTOR_KINDS = ("docker", "machine", "macos")
EXECUTOR_KEYS = frozenset({"docker", "machine", "macos", "resource_class", "shell", "working_directory", "environment"})
JOB_KEYS = frozenset(
    {
        "type",
        "docker",
        "machine",
        "macos",
        "executor",
        "steps",
        "parameters",
        "environment",
        "working_directory",
        "parallelism",
        "resource_class",
        "shell",
        "circleci_ip_ranges",
        "retention",
        "description",
        "plan_name",
        "validation",
        "branches",
        "key",
    }
)
_DROPPED_JOB_KEYS = frozenset({"parameters", "executor", "description"})
LEGACY_STEP_TYPES = {
    "shell": "run",
    "checkout": "checkout",
    "add-ssh-keys": "add_ssh_keys",
    "artifacts-store": "store_artifacts",
    "test-results-store": "store_test_results",
    "cache-save": "save_cache",
    "cache-restore": "restore_cache",
    "deploy": "deploy",
}
"""The ``- type: X`` steps of the first 2.0 syntax and the step each became (R-2.3)."""
STEPLESS_JOB_TYPES = frozenset({"approval", "no-op", "release", "lock", "unlock"})


class ExpandedSteps(YList):
    """Steps already expanded in the caller's scope (a ``steps`` argument); spliced verbatim."""

    __slots__ = ()


class DefaultSteps(YList):
    """A ``steps`` parameter's default: expanded where it is spliced, in the callee's scope."""

    __slots__ = ()


class ResolvedExecutor(dict[str, Any]):
    """An ``executor`` argument already resolved in the caller's scope."""

    is_resolved_executor = True


class JobExpander:
    """Turns a job invocation into a fully expanded job body."""

    def __init__(self, diag: Diagnostics, base_scope: Scope, *, version_20: bool = False) -> None:
        self.diag = diag
        self.base_scope = base_scope
        self.version_20 = version_20
        self._specs: dict[int, dict[str, ParameterSpec]] = {}

    # --- parameters --------------------------------------------------------------------------

    def specs_of(self, definition: Mapping[str, Any], path: str, *, job: bool = False) -> dict[str, ParameterSpec]:
        key = id(definition)
        specs = self._specs.get(key)
        if specs is None:
            specs = parse_declarations(definition.get("parameters"), f"{path}.parameters", self.diag, job=job)
            self._specs[key] = specs
        return specs

    def prepare_arguments(
        self,
        specs: Mapping[str, ParameterSpec],
        args: Mapping[str, Any],
        caller_ns: Namespace,
        caller_scope: Scope,
        path: str,
    ) -> dict[str, Any]:
        """Resolve ``steps`` and ``executor`` arguments in the caller's namespace (lexical
        scoping), leaving other arguments as they are."""
        prepared: dict[str, Any] = dict(args)
        for name, value in args.items():
            spec = specs.get(name)
            if spec is None:
                continue
            if spec.type == "steps" and isinstance(value, list) and not isinstance(value, ExpandedSteps):
                expanded = ExpandedSteps()
                expanded.extend(self.expand_steps(value, caller_ns, caller_scope, f"{path}.{name}", ()))
                prepared[name] = expanded
            elif spec.type == "executor" and isinstance(value, str | dict) and not isinstance(value, ResolvedExecutor):
                resolved = self.resolve_executor(value, caller_ns, f"{path}.{name}", loc_of(args, name))
                if resolved is not None:
                    prepared[name] = resolved
        if isinstance(args, YMap):
            out = args.derive()
            out.update(prepared)
            return out
        return prepared

    # --- jobs --------------------------------------------------------------------------------

    def expand_job(
        self,
        definition: YMap,
        home: Namespace,
        local_name: str,
        display: str,
        args: Mapping[str, Any],
        caller_ns: Namespace,
        caller_scope: Scope,
        extra_steps: tuple[list[Any], list[Any]],
        path: str,
        loc: Location | None,
    ) -> YMap | None:
        """Bind ``args`` and expand the job; pre/post steps are already expanded."""
        def_path = home.path_of("jobs", local_name)
        unknown = self.check_job_keys(definition, def_path)
        specs = self.specs_of(definition, def_path, job=True)
        prepared = self.prepare_arguments(specs, args, caller_ns, caller_scope, path)
        bound = bind_arguments(specs, prepared, f"job '{display}'", path, loc, self.diag)
        if bound is None:
            return None
        scope = self.base_scope.with_params(bound, home.in_orb)
        self.mark_steps_values(specs, bound, scope, def_path)
        body: YMap = substitute(
            _without(definition, (_DROPPED_JOB_KEYS - {"executor"}) | unknown), scope, self.diag, def_path
        )
        self.normalize_environments(body, def_path)
        job = body.derive()
        job_type = body.get("type", "build")
        executor_value = body.get("executor")
        executor_ok = True
        if executor_value is not None:
            executor = self.resolve_executor(executor_value, home, f"{def_path}.executor", loc_of(body, "executor"))
            executor_ok = executor is not None
            if executor is not None:
                job.update(_merge_executor(executor, body))
        for key, value in body.items():
            if key not in _DROPPED_JOB_KEYS and key not in job:
                job[key] = value
        pre, post = extra_steps
        steps = body.get("steps")
        if job_type in STEPLESS_JOB_TYPES and steps is None:
            return job
        if not isinstance(steps, list):
            self.diag.error("a job needs a list of 'steps'", def_path, loc_of(definition) or loc)
            return None
        job["steps"] = pre + self.expand_steps(steps, home, scope, f"{def_path}.steps", ()) + post
        if executor_ok:
            self.check_executor_kind(job, job_type, def_path, loc_of(definition))
        self.check_run_shape(job, def_path, loc_of(definition) or loc)
        return job

    def check_job_keys(self, definition: YMap, path: str) -> frozenset[str]:
        """Unknown job keys are errors in 2.1; version 2.0 drops them with a warning (R-2.3).
        Returns the keys to drop."""
        unknown = frozenset(str(key) for key in definition if key not in JOB_KEYS)
        for key in sorted(unknown):
            where, loc = f"{path}.{key}", loc_of(definition, key)
            if not self.version_20:
                self.diag.error(f"unknown job key '{key}'{did_you_mean(key, sorted(JOB_KEYS))}", where, loc)
            elif key == "filters":
                self.diag.warn(
                    "a job-level 'filters' has no effect (filter the job in its workflow entry); ignored", where, loc
                )
            else:
                self.diag.warn(f"unknown job key '{key}' ignored (version 2.0 drops it)", where, loc)
        return unknown

    def normalize_environments(self, body: YMap, path: str) -> None:
        """The ``environment`` of a job or executor body, and of its docker images, become maps
        of strings (``body`` is a copy; the images are copied before they change)."""
        if "environment" in body:
            body["environment"] = normalize_environment(
                body["environment"], f"{path}.environment", loc_of(body, "environment"), self.diag
            )
        images = body.get("docker")
        if not isinstance(images, list) or not any(
            isinstance(image, dict) and "environment" in image for image in images
        ):
            return
        copied = images.derive() if isinstance(images, YList) else YList()
        for index, image in enumerate(images):
            if isinstance(image, dict) and "environment" in image:
                image_loc = loc_of(images, index)
                environment = normalize_environment(
                    image["environment"],
                    f"{path}.docker[{index}].environment",
                    loc_of(image, "environment") or image_loc,
                    self.diag,
                )
                image = _without(image, frozenset())
                image["environment"] = environment
            copied.append(image)
        body["docker"] = copied

    def check_run_shape(self, job: Mapping[str, Any], path: str, loc: Location | None) -> None:
        """What the engine reads of a job to run it: a ``parallelism`` count and docker images
        with a name (anything else would only fail later, without a line)."""
        parallelism = job.get("parallelism")
        if parallelism is not None and not _is_count(parallelism):
            self.diag.error(
                f"parallelism must be a whole number of at least 1, not {parallelism!r}",
                f"{path}.parallelism",
                loc_of(job, "parallelism") or loc,
            )
        images = job.get("docker")
        if images is None:
            return
        if not isinstance(images, list) or not images:
            self.diag.error(
                "docker must be a list of images (- image: NAME)", f"{path}.docker", loc_of(job, "docker") or loc
            )
            return
        for index, image in enumerate(images):
            if not isinstance(image, dict) or not isinstance(image.get("image"), str):
                self.diag.error(
                    "a docker image must be a map with an 'image' name",
                    f"{path}.docker[{index}]",
                    loc_of(images, index) or loc,
                )

    def check_executor_kind(self, job: Mapping[str, Any], job_type: str, path: str, loc: Location | None) -> None:
        if job_type in STEPLESS_JOB_TYPES:
            return
        kinds = [k for k in EXECUTOR_KINDS if k in job]
        if not kinds:
            self.diag.error("a job needs an executor: one of docker, machine, macos or executor", path, loc)
        elif len(kinds) > 1:
            self.diag.error(f"a job may use only one executor type, found: {', '.join(kinds)}", path, loc)

    # --- executors ---------------------------------------------------------------------------

    def resolve_executor(self, value: Any, ns: Namespace, path: str, loc: Location | None) -> ResolvedExecutor | None:
        if isinstance(value, ResolvedExecutor):
            return value
        args: Mapping[str, Any]
        if isinstance(value, str):
            name, args = value, {}
        elif isinstance(value, dict) and isinstance(value.get("name"), str):
            name = value["name"]
            args = (
                _without(value, frozenset({"name"}))
                if isinstance(value, YMap)
                else {k: v for k, v in value.items() if k != "name"}
            )
        else:
            self.diag.error("executor must be a name or a map with 'name'", path, loc)
            return None
        found = ns.find("executors", name)
        if found is None:
            if report_broken_orb(ns, name, self.diag, path, loc):
                return None
            hint = did_you_mean(name, ns.candidates("executors"))
            self.diag.error(f"executor '{name}' is not defined{hint}", path, loc)
            return None
        definition, home, local = found
        if not isinstance(definition, dict):
            self.diag.error(f"executor '{name}' must be a map", path, loc)
            return None
        def_path = home.path_of("executors", local)
        for key in definition:
            if key not in EXECUTOR_KEYS and key not in ("parameters", "description"):
                self.diag.error(f"unknown executor key '{key}'", f"{def_path}.{key}", loc_of(definition, key))
        specs = self.specs_of(definition, def_path)
        bound = bind_arguments(specs, args, f"executor '{name}'", path, loc, self.diag)
        if bound is None:
            return None
        scope = self.base_scope.with_params(bound, home.in_orb)
        body = substitute(_without(definition, frozenset({"parameters", "description"})), scope, self.diag, def_path)
        self.normalize_environments(body, def_path)
        resolved = ResolvedExecutor(body)
        kinds = [k for k in EXECUTOR_KINDS if k in resolved]
        if len(kinds) > 1:
            self.diag.error(
                f"an executor may use only one executor type, found: {', '.join(kinds)}", def_path, loc_of(definition)
            )
        return resolved

    # --- steps -------------------------------------------------------------------------------

    def expand_steps(
        self, steps: list[Any], ns: Namespace, scope: Scope, path: str, stack: tuple[tuple[int, str], ...]
    ) -> list[Any]:
        if isinstance(steps, ExpandedSteps):
            self.count_steps(len(steps), path, loc_of(steps))
            return list(steps)
        out: list[Any] = []
        for index, step in enumerate(steps):
            self.expand_step(step, steps, index, ns, scope, f"{path}[{index}]", stack, out)
        return out

    def expand_step(
        self,
        step: Any,
        steps: list[Any],
        index: int,
        ns: Namespace,
        scope: Scope,
        path: str,
        stack: tuple[tuple[int, str], ...],
        out: list[Any],
    ) -> None:
        loc = loc_of(steps, index)
        if isinstance(step, ExpandedSteps | DefaultSteps):
            # ``- << parameters.p >>`` with a ``steps`` parameter splices like ``- steps:``.
            out.extend(self.expand_steps(step, ns, scope, path, stack))
            return
        if self.version_20 and isinstance(step, dict) and "type" in step:
            step = self.legacy_step(step, path, loc)
            if step is None:
                return
        if isinstance(step, str):
            name, args = step, None
        elif isinstance(step, dict) and len(step) == 1:
            ((name, args),) = step.items()
        elif isinstance(step, dict):
            keys = ", ".join(str(k) for k in step)
            self.diag.error(
                f"a step must have exactly one key, found: {keys} (check the indentation of the step's arguments)",
                path,
                loc,
            )
            return
        else:
            self.diag.error("a step must be a name or a map with a single key", path, loc)
            return
        if name in ("when", "unless"):
            self.expand_conditional(name, args, ns, scope, path, loc, stack, out)
        elif name == "steps":
            if isinstance(args, list):
                out.extend(self.expand_steps(args, ns, scope, path, stack))
            elif args is not None:
                self.diag.error("'steps' must be a list of steps", path, loc)
        elif ns.find("commands", name) is not None:
            self.expand_command(name, args, ns, scope, path, loc, stack, out)
        elif name in BUILTIN_STEPS:
            built = self.builtin_step(name, args, step, path, loc)
            if built is not None:
                self.count_steps(1, path, loc)
                out.append(built)
        elif name == "type" and isinstance(step, dict):
            self.diag.error(
                "unknown step 'type' (the legacy '- type: X' step form is only read in version 2.0 configs)", path, loc
            )
        elif not report_broken_orb(ns, name, self.diag, path, loc):
            candidates = sorted(BUILTIN_STEPS | SPECIAL_STEPS) + ns.candidates("commands")
            self.diag.error(f"unknown step '{name}'{did_you_mean(name, candidates)}", path, loc)

    def legacy_step(self, step: Mapping[str, Any], path: str, loc: Location | None) -> Any:
        """``- type: checkout`` (the first 2.0 syntax) read as the step it became (R-2.3)."""
        legacy = step["type"]
        name = LEGACY_STEP_TYPES.get(legacy) if isinstance(legacy, str) else None
        if name is None and isinstance(legacy, str) and legacy.replace("-", "_") in BUILTIN_STEPS:
            name = legacy.replace("-", "_")
        if name is None:
            known = ", ".join(sorted(LEGACY_STEP_TYPES))
            self.diag.error(f"unknown legacy step type '{legacy}' (known: {known})", path, loc)
            return None
        args = {
            ("working_directory" if key == "pwd" else str(key)): value for key, value in step.items() if key != "type"
        }
        self.diag.warn(f"the legacy step form '- type: {legacy}' is read as '- {name}'", path, loc)
        return {name: args} if args else name

    def count_steps(self, added: int, path: str, loc: Location | None) -> None:
        """Commands calling commands multiply steps: charge each one as it is made."""
        budget = self.diag.budget
        budget.steps += added
        if budget.steps > budget.limits.steps_per_pipeline:
            self.diag.over_limit(
                "steps in a pipeline", budget.steps, budget.limits.steps_per_pipeline, "steps_per_pipeline", path, loc
            )

    def builtin_step(self, name: str, args: Any, step: Any, path: str, loc: Location | None) -> Any:
        if name in ("run", "deploy"):
            if isinstance(args, str):
                return {name: {"command": args}}
            if not isinstance(args, dict) or not isinstance(args.get("command"), str):
                self.diag.error(f"'{name}' needs a 'command' string", path, loc)
                return None
            if "environment" in args:
                body = args.derive() if isinstance(args, YMap) else {}
                body.update(args)
                body["environment"] = normalize_environment(
                    args["environment"], f"{path}.environment", loc_of(args, "environment") or loc, self.diag
                )
                return {name: body}
            return step
        if args is None:
            return name
        if not isinstance(args, dict):
            self.diag.error(f"the arguments of '{name}' must be a map", path, loc)
            return None
        return step

    def mark_steps_values(
        self, specs: Mapping[str, ParameterSpec], bound: dict[str, Any], scope: Scope, path: str
    ) -> None:
        """A ``steps`` default is substituted in the element's own scope and marked, so a bare
        ``- << parameters.p >>`` item splices it (an argument is already ExpandedSteps).
        ``bound`` is the mapping ``scope`` reads, so the change is seen there."""
        for name, spec in specs.items():
            value = bound.get(name)
            if spec.type != "steps" or not isinstance(value, list) or isinstance(value, ExpandedSteps | DefaultSteps):
                continue
            value = substitute(value, scope, self.diag, f"{path}.parameters.{name}.default")
            marked = DefaultSteps(*((value.file, value.pos) if isinstance(value, YList) else ()))
            if isinstance(value, YList):
                marked.item_pos = value.item_pos
            marked.extend(value)
            bound[name] = marked

    def expand_conditional(
        self,
        kind: str,
        args: Any,
        ns: Namespace,
        scope: Scope,
        path: str,
        loc: Location | None,
        stack: tuple[tuple[int, str], ...],
        out: list[Any],
    ) -> None:
        if not isinstance(args, dict) or "condition" not in args or not isinstance(args.get("steps"), list | dict):
            self.diag.error(f"'{kind}' needs 'condition' and a list of 'steps'", path, loc)
            return
        steps = args["steps"]
        if isinstance(steps, dict):
            steps = _steps_from_map(steps)
        try:
            result = evaluate_logic(args["condition"])
        except ExpressionError as exc:
            self.diag.error(exc.message, f"{path}.condition", loc_of(args, "condition") or loc)
            return
        if result == (kind == "when"):
            out.extend(self.expand_steps(steps, ns, scope, f"{path}.steps", stack))

    def expand_command(
        self,
        name: str,
        args: Any,
        ns: Namespace,
        scope: Scope,
        path: str,
        loc: Location | None,
        stack: tuple[tuple[int, str], ...],
        out: list[Any],
    ) -> None:
        found = ns.find("commands", name)
        assert found is not None
        definition, home, local = found
        def_path = home.path_of("commands", local)
        frame = (id(definition), def_path)
        if frame in stack:
            chain = " -> ".join([p for _, p in stack] + [def_path])
            self.diag.error(f"command '{name}' calls itself: {chain}", path, loc)
            return
        depth_limit = self.diag.budget.limits.nesting_depth
        if len(stack) >= depth_limit:
            self.diag.over_limit("commands nested in commands", len(stack) + 1, depth_limit, "nesting_depth", path, loc)
        if not isinstance(definition, dict) or not isinstance(definition.get("steps"), list):
            self.diag.error(f"command '{name}' needs a list of 'steps'", def_path, loc_of(definition))
            return
        if args is None:
            args = {}
        if not isinstance(args, dict):
            self.diag.error(f"the arguments of command '{name}' must be a map", path, loc)
            return
        specs = self.specs_of(definition, def_path)
        prepared = self.prepare_arguments(specs, args, ns, scope, path)
        bound = bind_arguments(specs, prepared, f"command '{name}'", path, loc, self.diag)
        if bound is None:
            return
        inner_scope = self.base_scope.with_params(bound, home.in_orb)
        self.mark_steps_values(specs, bound, inner_scope, def_path)
        body_steps = substitute(definition["steps"], inner_scope, self.diag, f"{def_path}.steps")
        out.extend(self.expand_steps(body_steps, home, inner_scope, f"{def_path}.steps", (*stack, frame)))


def normalize_environment(value: Any, path: str, loc: Location | None, diag: Diagnostics) -> dict[str, str]:
    """An ``environment`` as a map of strings.  The list form is read in order: maps (often
    ``- NAME: value``, or an anchored map) and ``NAME=value`` strings (the docker form).  Booleans
    become ``1``/``0`` as CircleCI gives them, numbers the text they were written as."""
    items: list[tuple[Any, Any, Location | None]] = []
    if isinstance(value, dict):
        items = [(key, item, loc_of(value, key) or loc) for key, item in value.items()]
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            entry_loc = loc_of(value, index) or loc
            if isinstance(entry, dict):
                items.extend((key, item, loc_of(entry, key) or entry_loc) for key, item in entry.items())
            elif isinstance(entry, str) and "=" in entry:
                name, _, text = entry.partition("=")
                items.append((name, text, entry_loc))
            else:
                diag.error(
                    "an environment list holds maps (- NAME: value) or NAME=value strings",
                    f"{path}[{index}]",
                    entry_loc,
                )
    elif value is not None:
        diag.error("environment must be a map of names to values (or a list of them)", path, loc)
    out = value.derive() if isinstance(value, YMap) else YMap()
    for key, item, item_loc in items:
        if not isinstance(key, str) or not key:
            diag.error(f"environment variable name {key!r} must be a non-empty string", path, item_loc)
        elif isinstance(item, dict | list):
            diag.error(f"environment variable '{key}' must be a string, number or boolean", f"{path}.{key}", item_loc)
        else:
            out[key] = environment_value(item)
    return out


def _is_count(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().isdigit() and int(value) >= 1
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def environment_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return ""
    return str(value)


def _steps_from_map(steps: dict[str, Any]) -> YList:
    """Published orbs write a conditional's ``steps`` as a map of step name to arguments; read
    each entry as one step, in order."""
    out = YList(steps.file, steps.pos) if isinstance(steps, YMap) else YList()
    for key, value in steps.items():
        item = YMap(out.file, out.pos)
        item[key] = value
        out.append(item)
        if isinstance(steps, YMap):
            out.item_pos.append(steps.key_pos.get(key, steps.pos))
    return out


def _without(mapping: Mapping[str, Any], keys: frozenset[str]) -> YMap:
    out = mapping.derive() if isinstance(mapping, YMap) else YMap()
    for key, value in mapping.items():
        if key not in keys:
            out[key] = value
    return out


def _merge_executor(executor: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """Executor keys under the job's: job keys win wholesale, ``environment`` merges by key."""
    merged: dict[str, Any] = {}
    for key, value in executor.items():
        if key == "environment" and isinstance(value, dict) and isinstance(job.get(key), dict):
            env = dict(value)
            env.update(job[key])
            merged[key] = env
        elif key not in job:
            merged[key] = value
    return merged
