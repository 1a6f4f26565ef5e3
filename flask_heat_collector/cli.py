"""``flask heat ...`` commands and the ``heat-collector-migrate`` entry point."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from contextlib import closing
from typing import Any

import click
from flask.cli import AppGroup

from . import lifecycle
from .errors import ConfigurationError, HeatCollectorError, RetiredProjectKey
from .repositories import repository_from_uri, resolve_database_uri
from .repositories.base import Erasure
from .state import get_state

heat_cli = AppGroup("heat", help="Heat collector: database migration and projects.")


@heat_cli.command("migrate")
def migrate_command() -> None:
    """Create missing tables/collections and indexes (repeatable, keeps data), then settle the
    signals of the sessions marked pending (a migration that adds the signal tables marks every
    session, which the first report would otherwise settle while a client waits); say what was done."""
    state = get_state()
    done = state.repository.migrate()
    start, state.start_migration = state.start_migration, None
    if not done.changed and start is not None and start.changed:
        # HEAT_AUTO_MIGRATE did the work as this command's app started.
        click.echo(f"heat-collector: {start.describe()}, at start (HEAT_AUTO_MIGRATE)")
    else:
        click.echo(f"heat-collector: {done.describe()}")
    settled = state.repository.settle_rage(None)
    if settled:
        click.echo(f"heat-collector: settled the signals of {settled} pending session(s)")


@heat_cli.command("compact")
@click.option("--max-keys", default=100_000, show_default=True, help="Aggregate keys to merge in this run.")
def compact_command(max_keys: int) -> None:
    """Merge the heatmap aggregate pieces written by ingest (one per batch) into one per key."""
    merged = get_state().repository.compact(max_keys)
    click.echo(f"heat-collector: merged the pieces of {merged} aggregate key(s)")


@heat_cli.command("rebuild-aggregates")
def rebuild_command() -> None:
    """Recompute the heatmap aggregates from the stored events (after loading events with SQL)."""
    read = get_state().repository.rebuild_aggregates()
    click.echo(f"heat-collector: aggregates rebuilt from {read} stored event(s)")


@heat_cli.command("recompute-signals")
@click.option("--project-id", default=None, help="Only this project (default: every project).")
def recompute_signals_command(project_id: str | None) -> None:
    """Decide the rage clicks and other frustration signals of every session again with the current
    thresholds (HEAT_RAGE_*, HEAT_DEAD_CLICK_MS, ...; after a change)."""
    repository = get_state().repository
    repository.mark_rage(project_id)
    settled = repository.settle_rage(project_id)
    rule, signals = repository.rage_rule, repository.signal_rules
    click.echo(
        f"heat-collector: rage clicks and signals decided again for {settled} session(s) "
        f"({rule.clicks} clicks within {rule.window_ms} ms and {rule.radius_px} px; "
        f"dead after {signals.dead_click_ms} ms, quick back within {signals.quick_back_ms} ms, "
        f"more than {signals.scroll_reversals} scroll reversals a minute)"
    )


@heat_cli.command("reclassify")
@click.option("--project-id", "--project", "project_id", default=None, help="Only this project (default: every one).")
@click.option("--since", default=None, help="Only sessions seen at or after this time (unix ms or an ISO 8601 date).")
def reclassify_command(project_id: str | None, since: str | None) -> None:
    """Decide the traffic class (human or bot) of the stored sessions again with the current crawler
    list and HEAT_BOT_* rules, moving what each changed session adds up to (docs/traffic.md)."""
    from .views.query import parse_time

    since_ms = parse_time(since) if since is not None else None
    if since is not None and since_ms is None:
        raise click.BadParameter("unix ms or an ISO 8601 date", param_hint="--since")
    counts = get_state().repository.classify_sessions(project_id, since=since_ms)
    click.echo(
        f"heat-collector: traffic class decided again for {counts.sessions} session(s): "
        f"{counts.to_bot} became bot, {counts.to_human} became human"
    )


@heat_cli.command("erase")
@click.option("--project-id", required=True, help="The project to erase in.")
@click.option("--user-id", default=None, help="A user: the SDK's/JWT's user id or the internal id.")
@click.option("--session-id", default=None, help="A session id.")
@click.option("--before", default=None, help="Everything before this time (unix ms or an ISO 8601 date).")
@click.option("--dry-run", is_flag=True, help="Only count what would be erased.")
def erase_command(
    project_id: str, user_id: str | None, session_id: str | None, before: str | None, dry_run: bool
) -> None:
    """Erase a user's data, a session or everything before a time, correcting every heatmap (SPEC 8)."""
    from .views.query import parse_time

    if user_id is None and session_id is None and before is None:
        raise click.UsageError("give --user-id, --session-id or --before")
    before_ms = parse_time(before) if before is not None else None
    if before is not None and before_ms is None:
        raise click.BadParameter("unix ms or an ISO 8601 date", param_hint="--before")
    erasure = Erasure(project_id=project_id, user=user_id, session_id=session_id, before=before_ms)
    answer = lifecycle.erase(get_state().repository, erasure, dry_run=dry_run, actor="cli")
    click.echo(json.dumps(answer))


@heat_cli.command("export")
@click.option("--project-id", required=True, help="The user's project.")
@click.option("--user-id", required=True, help="The SDK's/JWT's user id or the internal id.")
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-", help="A file (default: stdout).")
def export_command(project_id: str, user_id: str, output: Any) -> None:
    """Write a user's data (user, sessions, events) as JSON, streamed (SPEC 8)."""
    with closing(lifecycle.export(get_state().repository, project_id, user_id, actor="cli")) as chunks:
        for chunk in chunks:  # closed however the loop ends: the export's end audit line is written now
            output.write(chunk)
    output.write("\n")


@heat_cli.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
def purge_command(dry_run: bool) -> None:
    """Delete raw events older than HEAT_RETENTION_DAYS and heatmap aggregates older than
    HEAT_AGGREGATE_RETENTION_DAYS, in short chunks while ingest goes on (for cron; SPEC 8)."""
    state = get_state()
    raw_days, aggregate_days = state.settings.retention_days, state.settings.aggregate_retention_days
    if raw_days is None and aggregate_days is None:
        click.echo(
            "heat-collector: neither HEAT_RETENTION_DAYS nor HEAT_AGGREGATE_RETENTION_DAYS is set; nothing purged"
        )
        return
    answer = lifecycle.purge(
        state.repository,
        raw_days=raw_days,
        aggregate_days=aggregate_days,
        erased_days=state.settings.erased_user_ttl_days,
        dry_run=dry_run,
        actor="cli",
    )
    click.echo(json.dumps(answer))


@heat_cli.group("project")
def project_group() -> None:
    """Register and manage project keys (see HEAT_REGISTERED_PROJECTS_ONLY)."""


@project_group.command("create")
@click.option("--name", default="Default", show_default=True, help="Display name of the project.")
@click.option("--key", "key", default=None, help="Project key to register; a random one when omitted.")
def project_create(name: str, key: str | None) -> None:
    """Register a project and print its id and key."""
    try:
        project = get_state().repository.create_project(key or secrets.token_urlsafe(24), name)
    except RetiredProjectKey:
        raise click.ClickException("that key was retired by rotate-key; it cannot name a project again") from None
    click.echo(f"{project.id}\t{project.key}\t{project.name}")


@project_group.command("list")
def project_list() -> None:
    """List projects: id, key, name."""
    for project in get_state().repository.list_projects():
        click.echo(f"{project.id}\t{project.key}\t{project.name}")


@project_group.command("rotate-key")
@click.argument("project_id")
@click.option("--key", "key", default=None, help="The new key; a random one when omitted.")
def project_rotate(project_id: str, key: str | None) -> None:
    """Give a project a new key; the old key is retired: refused at once (403 retired_project_key), for good."""
    try:
        project = get_state().repository.rotate_project_key(project_id, key or secrets.token_urlsafe(24))
    except RetiredProjectKey:
        raise click.ClickException("that key was retired by an earlier rotate-key; choose another") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if project is None:
        raise click.ClickException(f"no project with id {project_id}")
    click.echo(f"{project.id}\t{project.key}\t{project.name}")


_DIALECT_FAMILIES = {"pg": "postgresql", "mysql": "mysql"}


def uri_from_environ(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """The database URI and Mongo database name from the original's variables.

    ``HEAT_DIALECT`` is ``pg``, ``mysql``, ``sqlite`` or ``mongodb``; ``DATABASE_URL``
    may be driver-native (``postgres://``, ``mysql://``) or a SQLAlchemy URL.
    """
    dialect = environ.get("HEAT_DIALECT", "").strip().lower()
    url = environ.get("DATABASE_URL", "").strip()
    if dialect == "sqlite":
        path = environ.get("SQLITE_FILE") or (url.removeprefix("sqlite:///") if url else "heat-collector.db")
        return f"sqlite:///{os.path.abspath(path)}", None
    if dialect == "mongodb":
        if not url:
            raise ConfigurationError("DATABASE_URL is required when HEAT_DIALECT is 'mongodb'")
        return url, environ.get("MONGODB_DATABASE") or None
    if dialect not in _DIALECT_FAMILIES:
        raise ConfigurationError("HEAT_DIALECT must be one of pg, mysql, sqlite, mongodb")
    if not url:
        raise ConfigurationError(f"DATABASE_URL is required when HEAT_DIALECT is {dialect!r}")
    family, resolved = resolve_database_uri(url, "DATABASE_URL")  # the rule HEAT_DATABASE_URI follows too
    if family != _DIALECT_FAMILIES[dialect]:
        raise ConfigurationError(
            f"DATABASE_URL scheme {url.partition('://')[0]!r} does not match HEAT_DIALECT {dialect!r}"
        )
    return resolved, None


@click.command("heat-collector-migrate")
def migrate_main() -> None:
    """Migrate the database named by HEAT_DIALECT (pg, mysql, sqlite, mongodb) and DATABASE_URL,
    SQLITE_FILE or MONGODB_DATABASE, as the Express original's command does."""
    try:
        uri, mongo_database = uri_from_environ(os.environ)
        repository = repository_from_uri(uri, mongo_database)
        done = repository.migrate()
        repository.dispose()
    except HeatCollectorError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"heat-collector-migrate: {done.describe()}")
