"""The HeatCollector extension: configuration, state and blueprints of each app it serves."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask

from . import log as heat_log
from .auth import JwtVerifier, parse_query_keys
from .compactor import Compactor
from .config import Settings, load_config, warn_unknown_names
from .metrics import Metrics, RedisMetrics
from .rageclicks import RageRule
from .ratelimit import IngestRateLimiter
from .repositories import repository_from_uri
from .schemas import IngestSchema
from .signals import SignalRules
from .startup import PendingMigration, migrate_at_start
from .state import EXTENSION_KEY, HeatState, Hook, get_state
from .traffic import TrafficRules


def _metrics_for(settings: Settings) -> Metrics:
    if settings.rate_limit_storage_uri.startswith("redis"):
        # One namespace per database: the workers (and hosts) writing to it share the counters.
        source = settings.database_uri
        if settings.mongo_database is not None:
            source += f"#{settings.mongo_database}"
        namespace = hashlib.sha256(source.encode()).hexdigest()[:16]
        return RedisMetrics(settings.rate_limit_storage_uri, namespace)
    return Metrics()


class HeatCollector:
    """Flask extension receiving heat-tracker SDK batches and serving the query APIs.

    ``HeatCollector(app, **overrides)`` or ``heat = HeatCollector(); heat.init_app(app)``.
    Overrides are lower-case config names (``database_uri=...``) and win over ``app.config``.
    """

    def __init__(self, app: Flask | None = None, **overrides: Any) -> None:
        from .views import create_blueprints
        from .views.prometheus import create_prometheus_blueprint
        from .views.viewer import create_viewer_blueprint

        self.overrides = overrides
        self._hooks: list[Hook] = []
        self.blueprint, self.ingest_blueprint, self.api_blueprint = create_blueprints()
        self.viewer_blueprint = create_viewer_blueprint()
        self.prometheus_blueprint = create_prometheus_blueprint()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, register_blueprint: bool = True) -> None:
        """Validate config, prepare storage and register the blueprint and the ``flask heat`` commands.

        With ``register_blueprint=False`` the app registers ``ingest_blueprint``, ``api_blueprint``
        and/or ``prometheus_blueprint`` itself.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("HeatCollector is already initialised on this app.")
        settings = load_config(app, self.overrides)
        heat_log.set_level(settings.log_level)
        warn_unknown_names(app.config, "app.config")
        repository = repository_from_uri(settings.database_uri, settings.mongo_database)
        repository.rage_rule = RageRule(settings.rage_clicks, settings.rage_window_ms, settings.rage_radius_px)
        repository.signal_rules = SignalRules(
            settings.dead_click_ms,
            settings.signal_ignore_selectors,
            settings.error_event_names,
            settings.quick_back_ms,
            settings.scroll_reversals,
        )
        repository.traffic_rules = TrafficRules(
            settings.bot_regular_clicks,
            settings.bot_regular_jitter_ms,
            settings.bot_fast_clicks,
            settings.bot_fast_window_ms,
        )
        state = HeatState(
            settings=settings,
            repository=repository,
            limiter=IngestRateLimiter(settings.rate_limit, settings.rate_limit_storage_uri),
            new_projects=IngestRateLimiter(
                settings.new_projects_per_ip, settings.rate_limit_storage_uri, namespace="heat-new-project"
            ),
            metrics=_metrics_for(settings),
            ingest_schema=IngestSchema(settings.max_events_per_batch),
            jwt=JwtVerifier(settings) if settings.auth_mode in ("jwt", "both") else None,
            hooks=self._hooks,
            compactor=Compactor(
                settings.aggregate_compact_seconds,
                batches=settings.aggregate_compact_batches,
                settle_idle_ms=settings.signal_settle_idle_ms,
            ),
            query_keys=parse_query_keys(settings.query_api_keys),
            admin_keys=parse_query_keys(settings.admin_api_keys),
        )
        if settings.ip_hash_secret_generated:
            heat_log.log("warn", "HEAT_IP_HASH_SECRET is not set; ipHash values change at every start")
        if settings.query_auth == "none":
            heat_log.log("warn", "HEAT_QUERY_AUTH is 'none': anyone can read every project's data")
        elif not settings.query_api_keys:
            heat_log.log(
                "warn",
                "HEAT_QUERY_API_KEYS is empty while HEAT_QUERY_AUTH is 'apiKey': every query answers 401 "
                "until a key is configured",
            )
        if settings.auto_migrate:
            started = migrate_at_start(repository, settings.database_uri)
            if isinstance(started, PendingMigration):
                state.pending_migration = started
            else:
                state.start_migration = started
        app.extensions[EXTENSION_KEY] = state
        if register_blueprint:
            app.register_blueprint(self.blueprint, url_prefix=settings.url_prefix or None)
            if settings.viewer_enabled:
                app.register_blueprint(self.viewer_blueprint, url_prefix=settings.url_prefix or None)
            if settings.prometheus_enabled:
                app.register_blueprint(self.prometheus_blueprint, url_prefix=settings.url_prefix or None)
        from .cli import heat_cli

        if "heat" not in app.cli.commands:
            app.cli.add_command(heat_cli)

    def before_insert(self, hook: Hook) -> Hook:
        """Register ``hook(payload) -> payload``, run after validation; its output is validated again."""
        self._hooks.append(hook)
        return hook

    def metrics(self, app: Flask | None = None) -> dict[str, Any]:
        """The ingest counters: every worker's of this host in multiprocess mode, every host's with Redis."""
        return get_state(app).metrics.snapshot()

    @staticmethod
    def state(app: Flask | None = None) -> HeatState:
        """The per-app state (settings, repository, ...)."""
        return get_state(app)
