"""Repositories: the backend is chosen by the URI scheme, its driver imported lazily."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigurationError
from .base import Repository

__all__ = ["Repository", "repository_from_uri"]

_EXTRAS = {
    "sqlite": None,
    "postgresql": ("psycopg2", "postgres"),
    "mysql": ("pymysql", "mysql"),
    "mongodb": ("pymongo", "mongo"),
}


def _require(scheme: str) -> None:
    need = _EXTRAS[scheme]
    if need is None:
        return
    module, extra = need
    try:
        __import__(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"HEAT_DATABASE_URI uses {scheme} but {module} is not installed: "
            f"pip install 'flask-heat-collector[{extra}]'"
        ) from exc


def _sql(uri: str, mongo_database: str | None) -> Repository:
    from .sql import SqlRepository

    return SqlRepository(uri)


def _mongo(uri: str, mongo_database: str | None) -> Repository:
    from .mongo import MongoRepository  # type: ignore[import-not-found,unused-ignore]

    repo: Repository = MongoRepository(uri, mongo_database)
    return repo


_FACTORIES: dict[str, Callable[[str, str | None], Repository]] = {
    "sqlite": _sql,
    "postgresql": _sql,
    "mysql": _sql,
    "mongodb": _mongo,
}


def repository_from_uri(uri: str, mongo_database: str | None = None) -> Repository:
    """The repository for ``uri``: ``sqlite://``, ``postgresql+psycopg2://``, ``mysql+pymysql://``, ``mongodb://``."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in _FACTORIES:
        raise ConfigurationError(
            f"HEAT_DATABASE_URI has an unsupported scheme {scheme or uri!r}; "
            "use sqlite://, postgresql+psycopg2://, mysql+pymysql:// or mongodb://"
        )
    _require(scheme)
    return _FACTORIES[scheme](uri, mongo_database)
