"""The ``circlet`` command: serve, admin, config and orb."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from fastapi.encoders import jsonable_encoder
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.agent.cli import runner_command
from circlet.audit import repository as audit
from circlet.config.cli import config_app, orb_app
from circlet.contexts.service import reseal_env_vars
from circlet.db.engine import create_database
from circlet.db.migrate import upgrade_to_head
from circlet.engine.orchestrator import LOCAL_RESOURCE_CLASS
from circlet.groups import service as group_accounts
from circlet.hooks import service as hook_admin
from circlet.hooks.polling import parse_every
from circlet.http.errors import ApiError
from circlet.mirrors.git_mirror import without_credentials
from circlet.projects import service as project_accounts
from circlet.projects.ssh_keys.service import reseal_ssh_keys
from circlet.reach.network import Refused
from circlet.reach.repo_urls import parse_location
from circlet.runners import service as runner_admin
from circlet.secrets.keyring import KEY_FILE_NAME, drop_previous_keys, load_keyring, rotate_key_file
from circlet.settings import HomeError, Settings
from circlet.users import service as accounts

T = TypeVar("T")
HEAD_BRANCH_TIMEOUT_SECONDS = 30

app = typer.Typer(help="circlet: a self-hosted CircleCI.", no_args_is_help=True, add_completion=False)
admin_app = typer.Typer(help="Operator commands; they work on the database whether or not the server runs.")
token_app = typer.Typer(help="Personal API tokens.")
admin_app.add_typer(token_app, name="token")
user_app = typer.Typer(help="Users.")
admin_app.add_typer(user_app, name="user")
org_app = typer.Typer(help="Organizations and their members.")
admin_app.add_typer(org_app, name="org")
group_app = typer.Typer(help="Groups inside an organization.")
admin_app.add_typer(group_app, name="group")
project_app = typer.Typer(help="Projects: where their code lives.")
admin_app.add_typer(project_app, name="project")
runner_app = typer.Typer(help="Self-hosted runners.")
admin_app.add_typer(runner_app, name="runner")
runner_token_app = typer.Typer(help="Runner tokens, one resource class each.")
runner_app.add_typer(runner_token_app, name="token")
resource_class_app = typer.Typer(help="Resource classes, each owned by the organization of its namespace.")
runner_app.add_typer(resource_class_app, name="resource-class")
runner_instance_app = typer.Typer(help="Runner instances, as their claims showed them.")
runner_app.add_typer(runner_instance_app, name="instance")
app.add_typer(admin_app, name="admin")

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="Defaults to $CIRCLET_DATABASE_URL, else SQLite in $CIRCLET_HOME.")
]


def settings_with(database_url: str | None) -> Settings:
    settings = Settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value))


def fail(message: str, database: str | None = None) -> None:
    typer.echo(json.dumps({"error": message} | ({"database": database} if database else {})), err=True)
    raise typer.Exit(1)


def data_location(settings: Settings) -> str:
    """The database a command works on, as its output says it: the URL without a password."""
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on a migrated database; operator errors exit 1.

    The database is named on stderr (or in the error): an operator whose shell and server disagree
    on ``CIRCLET_HOME`` sees it. A home that does not exist is not made here: the data would go to a
    database no server reads; ``circlet serve`` makes its home."""
    location = data_location(settings)
    if not settings.database_url and not settings.home.is_dir():
        fail(
            f"no circlet data directory at {settings.home} (CIRCLET_HOME, default ~/.circlet): run the "
            "command with the CIRCLET_HOME or --database-url the server uses (`circlet serve` creates its "
            "home when it first starts)",
            location,
        )

    async def run() -> T:
        upgrade_to_head(settings.resolved_database_url)
        database = create_database(settings.resolved_database_url)
        try:
            async with database.writing() as session:
                return await work(session)
        finally:
            await database.dispose()

    try:
        result = asyncio.run(run())
    except accounts.AccountError as exc:
        fail(str(exc), location)
        raise  # unreachable: fail() exits
    typer.echo(f"circlet: database {location}", err=True)
    return result


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on.", show_default="$CIRCLET_HOST, else 127.0.0.1")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on.", show_default="$CIRCLET_PORT, else 8080")
    ] = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option(help="API processes (use more only with PostgreSQL).")] = 1,
    access_log: Annotated[bool, typer.Option(help="One JSON line per request.")] = True,
    runner: Annotated[
        bool, typer.Option(help="Start the embedded runner (resource class `local`) beside the server.")
    ] = True,
    trust_jobs: Annotated[
        bool,
        typer.Option(
            "--trust-jobs",
            help="Not root: let the embedded runner run jobs as this user (they can then read the server's data)"
            " [default: $CIRCLET_TRUST_JOBS, else off].",
        ),
    ] = False,
    runner_tasks: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs the embedded runner runs at the same time [default: the number of CPUs]."),
    ] = None,
) -> None:
    """Start the API server (embedded SQLite in $CIRCLET_HOME unless told otherwise) and, unless
    told not to, one embedded runner for jobs of resource class `local`."""
    import os

    import uvicorn

    from circlet.logs import configure_logging

    settings = settings_with(database_url)
    try:
        settings.ensure_home()
    except HomeError as exc:
        fail(str(exc))
    upgrade_to_head(settings.resolved_database_url)
    load_keyring(settings.home, settings.secret_key, settings.previous_secret_keys)
    if database_url:
        os.environ["CIRCLET_DATABASE_URL"] = database_url
    host = host or settings.host
    port = port or settings.port
    # The app builds job URLs from these; make them agree with what the command line says.
    os.environ["CIRCLET_HOST"], os.environ["CIRCLET_PORT"] = host, str(port)
    configure_logging(access_log=access_log)
    trusted = trust_jobs or settings.trust_jobs
    embedded = EmbeddedRunner(
        settings,
        f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}",
        runner_tasks or max(1, os.cpu_count() or 1),
        trust_jobs=trusted,
    )
    if runner:
        if trusted and os.geteuid() != 0:
            typer.echo(TRUSTED_JOBS_WARNING.format(home=settings.home), err=True)
        embedded.start()
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": "circlet.http.server_protocol:LimitedHttpToolsProtocol",
        "log_config": None,
        "access_log": False,
        "server_header": False,
    }
    try:
        if workers == 1:
            from circlet.engine.wakeups import close_all

            class Server(uvicorn.Server):
                """Ends runners' long-polls once shutdown begins (uvicorn waits for open requests)."""

                def handle_exit(self, sig: int, frame: Any) -> None:
                    close_all()
                    super().handle_exit(sig, frame)

            Server(uvicorn.Config("circlet.app:serving_app", **options)).run()
        else:
            # Worker processes run uvicorn's own server: a runner's long-poll may hold their
            # shutdown, so they give it a few seconds and then cut it (the runner claims again).
            uvicorn.run("circlet.app:serving_app", timeout_graceful_shutdown=5, **options)
    finally:
        embedded.stop()


TRUSTED_JOBS_WARNING = (
    "circlet serve: warning: --trust-jobs: the embedded runner runs jobs as this server's own user. A job can read"
    " and change everything this user can: {home} (the key file that decrypts every organization's secrets,"
    " the database, blobs, orbs), the database server if it trusts this user, and this user's other files."
    " Run the server as root (jobs then run as unprivileged users) or give untrusted code its own runner host"
    " (docs/security.md)."
)


def runner_environment(environ: dict[str, str], token: str) -> dict[str, str]:
    """The embedded runner's environment: the server's, without the server's settings (never the
    database URL or the secret key), with the runner's own (``CIRCLET_RUNNER_*``, ``CIRCLET_JOB_USER``)."""
    kept = {
        name: value
        for name, value in environ.items()
        if not name.startswith("CIRCLET_") or name.startswith("CIRCLET_RUNNER_") or name == "CIRCLET_JOB_USER"
    }
    return {**kept, "CIRCLET_RUNNER_TOKEN": token}


class EmbeddedRunner:
    """`circlet serve`'s own runner: a child process with a fresh token of class `local`, started
    once the server answers and stopped with it (and, on Linux, killed if the server dies). Unless
    jobs are trusted, a runner that cannot switch users (the server is not root) refuses host jobs."""

    def __init__(self, settings: Settings, url: str, tasks: int, *, trust_jobs: bool = False):
        self.settings = settings
        self.url = url
        self.tasks = tasks
        self.trust_jobs = trust_jobs
        self.process: Any = None
        self._stopping = False

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "circlet.agent",
            "--url",
            self.url,
            "--resource-class",
            LOCAL_RESOURCE_CLASS,
            "--name",
            "embedded",
            "--max-tasks",
            str(self.tasks),
            "--host-jobs",
            "allow" if self.trust_jobs else "refuse",
        ]

    def start(self) -> None:
        import threading

        async def mint(session: AsyncSession) -> str:
            minted = await runner_admin.create_token(
                session, None, LOCAL_RESOURCE_CLASS, "embedded runner", self.settings.shared_classes
            )
            return str(minted["token"])

        token = in_transaction(self.settings, mint)
        threading.Thread(target=self._launch, args=(token,), daemon=True).start()

    def _launch(self, token: str) -> None:
        import os
        import subprocess

        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self._stopping:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        if self._stopping:
            return
        env = runner_environment(dict(os.environ), token)
        self.process = subprocess.Popen(
            self.command(),
            env=env,
            preexec_fn=_die_with_parent,
        )
        # Linux signals the child when the thread that started it ends: this thread lives as long.
        self.process.wait()

    def stop(self) -> None:
        import subprocess

        self._stopping = True
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (a no-op elsewhere)."""
    import ctypes
    import os
    import signal

    os.umask(0o022)  # the server's 077 is for $CIRCLET_HOME; jobs get the usual one
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return


@runner_token_app.command("create")
def runner_token_create(
    resource_class: Annotated[
        str, typer.Option("--resource-class", help="An existing class (namespace/name), or a shared one such as local.")
    ],
    label: Annotated[str, typer.Option("--label", "--nickname", help="A note on what the token is for.")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Mint a runner token for one resource class and print it (it is shown only this once)."""
    settings = settings_with(database_url)

    async def work(session: AsyncSession) -> dict[str, Any]:
        minted = await operator_call(
            runner_admin.create_token(session, None, resource_class, label, settings.shared_classes)
        )
        return {"id": str(minted["id"]), "resource_class": resource_class, "token": minted["token"]}

    print_json(in_transaction(settings, work))


@runner_token_app.command("list")
def runner_token_list(
    org: Annotated[str | None, typer.Option(help="Only this organization's tokens (name or slug).")] = None,
    resource_class: Annotated[str | None, typer.Option("--resource-class", help="Only this class's tokens.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print runner tokens' metadata (never the tokens), one JSON object a line."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        owner = await accounts.find_org_by_name(session, org) if org else None
        return await runner_admin.operator_tokens(session, owner, resource_class)

    for row in in_transaction(settings_with(database_url), work):
        print_json(jsonable_encoder(row))


@runner_token_app.command("revoke")
def runner_token_revoke(token_id: str, database_url: DatabaseUrl = None) -> None:
    """Revoke a runner token by its id: its runner's next claim is refused; a task it runs finishes."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        await operator_call(runner_admin.revoke_token(session, None, token_id))
        return {"id": token_id, "revoked": True}

    print_json(in_transaction(settings_with(database_url), work))


@resource_class_app.command("create")
def resource_class_create(
    name: Annotated[str, typer.Argument(help="namespace/name; the namespace is the organization's name.")],
    org: Annotated[str, typer.Option(help="The owning organization (name or slug).")],
    description: Annotated[str, typer.Option(help="What runs on it.")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create a resource class owned by an organization."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        owner = await accounts.find_org_by_name(session, org)
        created = await operator_call(runner_admin.create_class(session, None, name, description, owner))
        return {**jsonable_encoder(created), "org": accounts.org_json(owner)["slug"]}

    print_json(in_transaction(settings_with(database_url), work))


@resource_class_app.command("list")
def resource_class_list(
    org: Annotated[str | None, typer.Option(help="Only this organization's classes (name or slug).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print resource classes, one JSON object a line."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return await runner_admin.operator_classes(
            session, await accounts.find_org_by_name(session, org) if org else None
        )

    for row in in_transaction(settings_with(database_url), work):
        print_json(jsonable_encoder(row))


@runner_instance_app.command("list")
def runner_instance_list(
    org: Annotated[str | None, typer.Option(help="Only this organization's runners (name or slug).")] = None,
    resource_class: Annotated[str | None, typer.Option("--resource-class", help="Only this class's runners.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the runner instances seen claiming work, one JSON object a line."""

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        owner = await accounts.find_org_by_name(session, org) if org else None
        return await runner_admin.operator_instances(session, owner, resource_class)

    for row in in_transaction(settings_with(database_url), work):
        print_json(jsonable_encoder(row))


async def operator_call(work: Awaitable[T]) -> T:
    """An operation of the API run by the operator: its error message is the command's."""
    try:
        return await work
    except ApiError as exc:
        raise accounts.AccountError(exc.message) from None


@admin_app.command()
def bootstrap(
    org: Annotated[str, typer.Option(help="Organization name (gh/NAME) or slug.")],
    user: Annotated[str, typer.Option(help="User login.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Create (or reuse) an organization and a user, make the user its admin, and mint a token."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        organization = await accounts.ensure_org(session, org)
        person = await accounts.ensure_user(session, user)
        await accounts.add_member(session, organization, person, "admin")
        minted = await accounts.mint_token(session, person, "bootstrap")
        return {"org": accounts.org_json(organization), "user": accounts.user_json(person), "token": minted.token}

    print_json(in_transaction(settings_with(database_url), work))


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="Login of the token's owner.")],
    label: Annotated[str, typer.Option(help="A note on what the token is for.")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Mint a new personal API token and print it (it is shown only this once)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        minted = await accounts.mint_token(session, await accounts.find_user(session, user), label)
        return {"id": str(minted.id), "token": minted.token}

    print_json(in_transaction(settings_with(database_url), work))


@token_app.command("revoke")
def token_revoke(token_id: str, database_url: DatabaseUrl = None) -> None:
    """Revoke a token by its id."""
    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        fail(f"not a token id: {token_id!r}")
        return

    async def work(session: AsyncSession) -> dict[str, Any]:
        await accounts.revoke_token(session, parsed)
        return {"id": str(parsed), "revoked": True}

    print_json(in_transaction(settings_with(database_url), work))


@admin_app.command("audit")
def audit_log(database_url: DatabaseUrl = None) -> None:
    """Print the audit log as JSON lines, oldest first."""

    async def work(session: AsyncSession) -> None:
        async for event in audit.events(session):
            typer.echo(
                json.dumps(
                    {
                        "at": event.at.isoformat(),
                        "actor": event.actor,
                        "actor_id": str(event.actor_id) if event.actor_id else None,
                        "action": event.action,
                        "target_type": event.target_type,
                        "target_id": event.target_id,
                        "org_id": str(event.org_id) if event.org_id else None,
                        "details": event.details,
                    }
                )
            )

    in_transaction(settings_with(database_url), work)


@admin_app.command("rotate-key")
def rotate_key(database_url: DatabaseUrl = None) -> None:
    """Re-encrypt every secret under a new key while the server keeps serving.

    With a key file in $CIRCLET_HOME, a new key is made and the old one dropped once nothing uses it.
    With CIRCLET_SECRET_KEY, set the new key there and the old one in CIRCLET_PREVIOUS_SECRET_KEYS first.
    """
    settings = settings_with(database_url)
    uses_key_file = not settings.secret_key
    if uses_key_file and not (settings.home / KEY_FILE_NAME).exists():
        fail(f"no key file at {settings.home / KEY_FILE_NAME}; nothing to rotate")
    if uses_key_file:
        rotate_key_file(settings.home)
        time.sleep(1.0)  # a seal that began before the switch commits before the last sweep
    keyring = load_keyring(settings.home, settings.secret_key, settings.previous_secret_keys)

    async def sweep() -> int:
        upgrade_to_head(settings.resolved_database_url)
        database = create_database(settings.resolved_database_url)
        total = 0
        try:
            while True:
                async with database.writing() as session:
                    count = await reseal_env_vars(session, keyring)
                    count += await project_accounts.reseal_env_vars(session, keyring)
                    count += await project_accounts.reseal_checkout_keys(session, keyring)
                    count += await reseal_ssh_keys(session, keyring)
                    count += await hook_admin.reseal_hook_secrets(session, keyring)
                if count == 0:
                    return total
                total += count
        finally:
            await database.dispose()

    resealed = asyncio.run(sweep())
    if uses_key_file:
        drop_previous_keys(settings.home)
    print_json({"key_id": keyring.current_id, "resealed": resealed})
    typer.echo(f"circlet: database {data_location(settings)}", err=True)


@user_app.command("create")
def user_create(
    login: str,
    name: Annotated[str | None, typer.Option(help="Display name [default: the login].")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user (logins match case-insensitively); an existing login is an error."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return accounts.user_json(await accounts.create_user(session, login, name))

    print_json(in_transaction(settings_with(database_url), work))


@user_app.command("set-password")
def user_set_password(login: str, database_url: DatabaseUrl = None) -> None:
    """Set a user's web sign-in password, read from standard input (one line; stored as argon2id)."""
    password = sys.stdin.readline().rstrip("\r\n")

    async def work(session: AsyncSession) -> dict[str, Any]:
        person = await accounts.find_user(session, login)
        await accounts.set_password(session, person, password)
        return {"user": accounts.user_json(person), "password_set": True}

    print_json(in_transaction(settings_with(database_url), work))


@user_app.command("allow-org-creation")
def user_allow_org_creation(
    login: str,
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the permission back.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Let a user create organizations through the API when CIRCLET_ORG_CREATION=operators."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        person = await accounts.find_user(session, login)
        await accounts.allow_org_creation(session, person, not revoke)
        return {"user": accounts.user_json(person), "may_create_orgs": not revoke}

    print_json(in_transaction(settings_with(database_url), work))


@org_app.command("add-member")
def org_add_member(
    org: Annotated[str, typer.Option(help="Organization slug (gh/NAME, bb/NAME, circleci/UUID) or NAME.")],
    user: Annotated[str, typer.Option(help="User login.")],
    role: Annotated[str, typer.Option(help="admin, member or viewer.")] = "member",
    database_url: DatabaseUrl = None,
) -> None:
    """Give a user a role in an organization (or change the role they have)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        organization = await accounts.find_org_by_name(session, org)
        person = await accounts.find_user(session, user)
        await accounts.add_member(session, organization, person, role)
        return {"org": accounts.org_json(organization), "user": accounts.user_json(person), "role": role}

    print_json(in_transaction(settings_with(database_url), work))


@group_app.command("add-member")
def group_add_member(
    org: Annotated[str, typer.Option(help="Organization slug or NAME.")],
    group: Annotated[str, typer.Option(help="Group name.")],
    user: Annotated[str, typer.Option(help="Login of a member of the organization.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Put a member of an organization into one of its groups (the API has no member operations)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        organization = await accounts.find_org_by_name(session, org)
        person = await accounts.find_user(session, user)
        joined = await group_accounts.add_group_member(session, organization, group, person)
        return {"group": {"id": str(joined.id), "name": joined.name}, "user": accounts.user_json(person)}

    print_json(in_transaction(settings_with(database_url), work))


def code_location(repo: str) -> str:
    """A URL (``https://...``, ``ssh://...``, ``git@host:path``) as given; a local path made absolute,
    so that the engine finds it whatever its working directory. What git would read as neither is
    left as given, for the project's checks to refuse with their reason."""
    try:
        location = parse_location(repo)
    except Refused:
        return repo
    if location.is_local and not repo.lower().startswith("file://"):
        return str(Path(repo).expanduser().resolve())
    return repo


def head_branch(repo: str) -> tuple[str, str | None]:
    """The branch the repository's HEAD names (its default branch), asked of the repository itself;
    ``main`` and a notice saying why when it cannot be read (not reachable yet, or empty)."""
    try:
        done = subprocess.run(
            ["git", "ls-remote", "--symref", "--", repo, "HEAD"],
            capture_output=True,
            text=True,
            timeout=HEAD_BRANCH_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            # Asked before the project's rules refuse a location: never a transport that runs commands.
            env={
                **os.environ,
                "GIT_TERMINAL_PROMPT": "0",
                "LC_ALL": "C",
                "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
            },
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = str(exc)
    else:
        for line in done.stdout.splitlines():
            target, _, name = line.partition("\t")
            if name == "HEAD" and target.startswith("ref: refs/heads/"):
                return target.removeprefix("ref: refs/heads/"), None
        reason = done.stderr.strip() or "the repository has no HEAD branch"
    notice = (
        f"circlet: could not read the default branch of {without_credentials(repo)} "
        f"({without_credentials(reason)}); using main (--default-branch chooses another)"
    )
    return "main", notice


@project_app.command("create")
def project_create(
    slug: Annotated[str, typer.Argument(help="gh/ORG/NAME, bb/ORG/NAME or circleci/ORG-UUID/NAME.")],
    repo: Annotated[str, typer.Option(help="Git URL or local repository path of the project's code.")],
    default_branch: Annotated[
        str | None,
        typer.Option(
            help="The branch pipelines build by default.",
            show_default="the repository's HEAD branch, else main",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a project in an existing organization and record where its code lives."""
    parts = slug.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        fail(f"not a project slug: {slug!r} (expected gh/ORG/NAME)")
        return

    settings = settings_with(database_url)
    location = code_location(repo)
    branch, notice = (default_branch, None) if default_branch else head_branch(location)

    async def work(session: AsyncSession) -> dict[str, Any]:
        organization = await accounts.find_org_by_name(session, f"{parts[0]}/{parts[1]}")
        created = await project_accounts.add_project_for_operator(
            session, organization, parts[2], location, branch, settings.repo_rules()
        )
        return dict(jsonable_encoder(created))

    print_json(in_transaction(settings, work))
    if notice:
        typer.echo(notice, err=True)


def project_parts(slug: str) -> list[str]:
    parts = slug.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        fail(f"not a project slug: {slug!r} (expected gh/ORG/NAME)")
    return parts


@project_app.command("hooks")
def project_hooks(
    slug: Annotated[str, typer.Argument(help="gh/ORG/NAME, bb/ORG/NAME or circleci/ORG-UUID/NAME.")],
    rotate: Annotated[bool, typer.Option(help="Make a new secret (the forges must be given it).")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the project's webhook URLs and secret for GitHub, GitLab and Gitea/Forgejo."""
    parts = project_parts(slug)
    settings = settings_with(database_url)

    async def work(session: AsyncSession) -> dict[str, Any]:
        organization = await accounts.find_org_by_name(session, f"{parts[0]}/{parts[1]}")
        keyring = load_keyring(settings.home, settings.secret_key, settings.previous_secret_keys)
        try:
            project_id = await hook_admin.operator_project(session, organization.id, parts[2])
        except ApiError as exc:
            raise accounts.AccountError(exc.message) from None
        secret = await hook_admin.hook_secret(session, keyring, project_id, rotate=rotate)
        return hook_admin.hook_urls(settings.base_url, project_id, secret)

    print_json(in_transaction(settings, work))


@project_app.command("poll")
def project_poll(
    slug: Annotated[str, typer.Argument(help="gh/ORG/NAME, bb/ORG/NAME or circleci/ORG-UUID/NAME.")],
    every: Annotated[str, typer.Option(help="How often to poll the remote: 60s, 5m, 1h.")] = "60s",
    off: Annotated[bool, typer.Option(help="Stop polling the project.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Poll the project's remote (`git ls-remote`) for new heads and tags, for repositories that
    cannot send webhooks; each fires the project's triggers as a forge's push would."""
    parts = project_parts(slug)
    try:
        seconds = None if off else parse_every(every)
    except ValueError as exc:
        fail(str(exc))
        return

    async def work(session: AsyncSession) -> dict[str, Any]:
        organization = await accounts.find_org_by_name(session, f"{parts[0]}/{parts[1]}")
        try:
            project_id = await hook_admin.operator_project(session, organization.id, parts[2])
        except ApiError as exc:
            raise accounts.AccountError(exc.message) from None
        await hook_admin.set_polling(session, project_id, seconds)
        return {"project_id": str(project_id), "poll_every_seconds": seconds}

    print_json(in_transaction(settings_with(database_url), work))


app.add_typer(config_app, name="config")
app.add_typer(orb_app, name="orb")
app.command("runner", help="Start a runner agent that claims and runs jobs from a circlet server.")(runner_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
