"""The ``circleci`` / ``circleci-agent`` helpers a job finds on its PATH: each test runs a task whose
steps call them, as a job would, and checks their exact output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from circlet.agent.job_tools.globbing import expand_braces
from tests.agent.conftest import execute, make_task, run_step

FILES = "mkdir -p t && for f in a b c d e; do : > t/$f.py; done\n"
"""Five empty test files, t/a.py to t/e.py."""


async def job_output(work_root: Path, command: str, **overrides: Any) -> str:
    """The output of one ``run`` step that must succeed."""
    run = await execute(make_task([run_step(command)], **overrides), work_root)
    assert run.result.status == "success", run.sink.outputs
    return run.sink.output(0)


def task_bin(work_root: Path, payload: dict[str, Any]) -> Path:
    return work_root / f"task-{payload['task_id']}" / "bin"


async def test_both_helpers_are_first_on_the_path(work_root: Path) -> None:
    payload = make_task([run_step("command -v circleci; command -v circleci-agent; circleci tests glob x")])
    run = await execute(payload, work_root)
    bin_dir = task_bin(work_root, payload)
    assert run.sink.output(0) == f"{bin_dir / 'circleci'}\n{bin_dir / 'circleci-agent'}\n"
    assert run.result.status == "success"


class TestGlob:
    async def test_double_star_and_braces(self, work_root: Path) -> None:
        command = (
            "mkdir -p src/pkg/deep docs .hidden\n"
            "touch src/a.py src/pkg/b.py src/pkg/deep/c.py src/pkg/deep/d.txt docs/a.md docs/b.md docs/c.md"
            " .hidden/e.py top.py\n"
            "circleci tests glob 'src/**/*.py' 'docs/{a,b}.md'\n"
            "echo ---\n"
            "circleci tests glob '**/*.py'\n"
            "echo ---\n"
            "circleci tests glob 'src/*/?.py' 'src/pkg/deep/*.{py,t[x]t}'\n"
        )
        assert await job_output(work_root, command) == (
            "docs/a.md\ndocs/b.md\nsrc/a.py\nsrc/pkg/b.py\nsrc/pkg/deep/c.py\n"
            "---\n"
            "src/a.py\nsrc/pkg/b.py\nsrc/pkg/deep/c.py\ntop.py\n"
            "---\n"
            "src/pkg/b.py\nsrc/pkg/deep/c.py\nsrc/pkg/deep/d.txt\n"
        )

    async def test_no_match_prints_nothing(self, work_root: Path) -> None:
        assert await job_output(work_root, "circleci tests glob 'nowhere/**/*.py' '*.none'; echo status=$?") == (
            "status=0\n"
        )

    def test_nested_braces(self) -> None:
        assert expand_braces("a{b,c{d,e}}f{,g}") == ["abf", "abfg", "acdf", "acdfg", "acef", "acefg"]
        assert expand_braces("{single}.py") == ["{single}.py"]


class TestSplit:
    async def test_by_name_is_sorted_round_robin_on_this_node(self, work_root: Path) -> None:
        command = (
            "printf 't5 t1 t3\\nt2 t4\\nt6 t7 t1\\n' > names\n"
            "circleci tests split < names | tr '\\n' ' '; echo\n"
            "for i in 0 1 2; do circleci tests split --index $i --total 3 names | tr '\\n' ' '; echo; done\n"
        )
        job = {"id": "j", "name": "test", "parallel_index": 1, "parallelism": 3}
        assert await job_output(work_root, command, job=job) == "t2 t5 \nt1 t4 t7 \nt2 t5 \nt3 t6 \n"

    async def test_by_filesize_packs_greedily(self, work_root: Path) -> None:
        command = (
            "for f in a:100 b:60 c:50 d:40 e:10; do head -c ${f#*:} /dev/zero > ${f%:*}.txt; done\n"
            "for i in 0 1; do ls *.txt | circleci tests split --split-by=filesize --index $i --total 2"
            " | tr '\\n' ' '; echo; done\n"
        )
        assert await job_output(work_root, command) == "a.txt d.txt \nb.txt c.txt e.txt \n"

    async def test_by_timings_with_the_mean_for_an_unknown_file(self, work_root: Path) -> None:
        timings = {"filename": {"t/a.py": 5, "t/b.py": 3, "t/c.py": 3, "t/d.py": 1}, "classname": {"t/e.py": 9}}
        command = FILES + (
            "for i in 0 1; do circleci tests glob 't/*.py' | circleci tests split --split-by=timings --total 2"
            " --index $i 2>/dev/null | tr '\\n' ' '; echo; done\n"
            "circleci tests glob 't/*.py' | circleci tests split --split-by=timings 2>&1 >/dev/null\n"
        )
        assert await job_output(work_root, command, test_timings=timings) == (
            't/a.py t/e.py \nt/b.py t/c.py t/d.py \nAutodetected filename timings.\nNo timing found for "t/e.py"\n'
        )

    async def test_by_timings_with_time_default_and_timings_type(self, work_root: Path) -> None:
        timings = {
            "filename": {"t/a.py": 5, "t/b.py": 3, "t/c.py": 3, "t/d.py": 1},
            "classname": {"A": 1, "B": 2, "C": 3},
        }
        command = FILES + (
            "for i in 0 1; do ls t/*.py | circleci tests split --split-by=timings --time-default=10s --total 2"
            " --index $i 2>/dev/null | tr '\\n' ' '; echo; done\n"
            "for i in 0 1; do echo A B C | circleci tests split --split-by=timings --timings-type=classname"
            " --total 2 --index $i | tr '\\n' ' '; echo; done\n"
        )
        assert await job_output(work_root, command, test_timings=timings) == (
            "t/d.py t/e.py \nt/a.py t/b.py t/c.py \nC \nA B \n"
        )

    async def test_falls_back_to_names_without_timings(self, work_root: Path) -> None:
        command = FILES + (
            "ls t/*.py | circleci tests split --split-by=timings --total 2 --index 0\n"
            "ls t/*.py | circleci tests split --split-by=timings --timings-type=testname --total 2 --index 1"
            " 2>&1 >/dev/null\n"
        )
        assert await job_output(work_root, command) == (
            "No timing data found for this project (no stored test results yet); splitting by name.\n"
            "t/a.py\nt/c.py\nt/e.py\n"
            "No timing data found for this project (no stored test results yet); splitting by name.\n"
        )
        timings = {"filename": {"other.py": 1}}
        assert await job_output(work_root, command, test_timings=timings) == (
            "No timings match these names; splitting by name.\nt/a.py\nt/c.py\nt/e.py\n"
            "No testname timings match these names; splitting by name.\n"
        )

    async def test_a_bad_index_is_refused(self, work_root: Path) -> None:
        run = await execute(make_task([run_step("echo a | circleci tests split --index 2 --total 2")]), work_root)
        assert run.sink.final()[0] == ("failed", 2)
        assert "--index must be from 0 to --total - 1 (got index 2, total 2)" in run.sink.output(0)


class TestRun:
    async def test_pipes_this_nodes_share_to_the_command(self, work_root: Path) -> None:
        command = FILES + (
            "circleci tests glob 't/*.py' | circleci tests run --command='xargs echo testing' --verbose\n"
            "circleci tests glob 't/*.py' | circleci tests run --index 1 --total 2 --command='cat > mine; exit 7'"
            " || echo status=$?\n"
            "cat mine\n"
            "echo | circleci tests run --command='echo must not run'\n"
        )
        job = {"id": "j", "name": "test", "parallel_index": 0, "parallelism": 2}
        assert await job_output(work_root, command, job=job) == (
            "circleci tests run: node 0 of 2 runs 3 tests: ['t/a.py', 't/c.py', 't/e.py']\n"
            "testing t/a.py t/c.py t/e.py\n"
            "status=7\n"
            "t/b.py\nt/d.py\n"
            "circleci tests run: no tests for node 0; the command is not run\n"
        )


async def test_env_subst(work_root: Path) -> None:
    command = (
        "export NAME=world\n"
        "printf 'hello $NAME, ${NAME}! [$UNSET_VAR] $ 5$ ${NAME}s\\n' | circleci env subst\n"
        "circleci env subst 'arg: ${NAME}/$PROJECT_VAR'\n"
    )
    output = await job_output(work_root, command, environment={"PROJECT_VAR": "project"})
    assert output == "hello world, world! [] $ 5$ worlds\narg: world/project\n"


class TestStepHalt:
    async def test_later_steps_are_skipped_and_the_job_succeeds(self, work_root: Path) -> None:
        steps = [
            run_step("echo before; circleci step halt; echo rest of the step", name="Halts"),
            run_step("echo never", name="Next"),
            run_step("echo never", name="Always", when="always"),
        ]
        run = await execute(make_task(steps), work_root)
        assert run.result.status == "success"
        assert run.result.message is None
        assert run.sink.final() == {0: ("success", 0), 1: ("skipped", None), 2: ("skipped", None)}
        assert run.sink.output(0) == "before\nstep halt: the job ends successfully after this step\nrest of the step\n"

    async def test_circleci_agent_inside_a_when_step(self, work_root: Path) -> None:
        nested = [{"run": "circleci-agent step halt 2>/dev/null; echo halting"}, {"run": "echo never"}]
        steps = [{"type": "when", "condition": True, "steps": nested}, run_step("echo never")]
        run = await execute(make_task(steps), work_root)
        assert run.result.status == "success"
        assert run.sink.final() == {0: ("success", 0), 1: ("skipped", None)}
        assert run.sink.output(0) == "==> circleci-agent step halt 2>/dev/null; echo halting\nhalting\n"


async def test_job_python_path_does_not_break_the_helpers(work_root: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "circlet"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('the job shadowed circlet')\n")
    command = "circleci env subst 'ok $CI'"
    assert await job_output(work_root, command, environment={"CI": "true", "PYTHONPATH": str(shadow.parent)}) == (
        "ok true\n"
    )
