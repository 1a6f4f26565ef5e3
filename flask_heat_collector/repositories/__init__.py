"""Repositories: the backend is chosen by the URI scheme, its driver imported lazily."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable

import sqlalchemy as sa

from ..errors import ConfigurationError
from .base import Repository

__all__ = ["Repository", "display_uri", "repository_from_uri", "resolve_database_uri"]

# The backend family of each accepted scheme name (the part before ``+driver``).
_FAMILIES = {
    "sqlite": "sqlite",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",  # the mysql dialect detects MariaDB by itself
    "mongodb": "mongodb",
}
# The driver a scheme without one gets: the first installed (module, SQLAlchemy driver name).
_DRIVERS = {
    "postgresql": (("psycopg2", "psycopg2"), ("psycopg", "psycopg")),
    "mysql": (("pymysql", "pymysql"), ("MySQLdb", "mysqldb")),
}
# The extra of each family and the module it installs.
_EXTRAS = {"postgresql": ("postgres", "psycopg2"), "mysql": ("mysql", "pymysql"), "mongodb": ("mongo", "pymongo")}


def _missing(key: str, scheme: str, family: str, module: str) -> ConfigurationError:
    """The error for a driver module that is not installed, naming the extra to install."""
    extra, extra_module = _EXTRAS.get(family, ("", ""))
    if module == extra_module:
        hint = f"pip install 'flask-heat-collector[{extra}]'"
    elif extra:
        hint = f"install it, or pip install 'flask-heat-collector[{extra}]' and write {family}://"
    else:
        hint = "install the package that provides it"
    return ConfigurationError(f"{key} uses {scheme}:// but the module {module!r} is not installed: {hint}")


def resolve_database_uri(uri: str, key: str = "HEAT_DATABASE_URI") -> tuple[str, str]:
    """``(family, uri)``: a plain ``postgres``/``postgresql``/``mysql``/``mariadb`` scheme gets the
    installed driver; a driver given explicitly must be one SQLAlchemy knows and must import.

    Raises ConfigurationError naming ``key`` (and the extra to install when a module is missing).
    """
    scheme, sep, rest = uri.partition("://")
    name, _, driver = scheme.lower().partition("+")
    family = _FAMILIES.get(name) if sep else None
    if family is None:
        given = f"an unsupported scheme {scheme!r}" if sep else "no scheme"
        raise ConfigurationError(
            f"{key} has {given}; use sqlite://, postgresql://, mysql:// (or mariadb://) or mongodb://"
        )
    if family == "mongodb":
        if importlib.util.find_spec("pymongo") is None:
            raise _missing(key, scheme, family, "pymongo")
        return family, uri
    if not driver and family in _DRIVERS:
        installed = [known for module, known in _DRIVERS[family] if importlib.util.find_spec(module) is not None]
        if not installed:
            raise _missing(key, scheme, family, _DRIVERS[family][0][0])
        driver = installed[0]
    resolved = f"{family}+{driver}://{rest}" if driver else f"{family}://{rest}"
    try:
        dialect = sa.make_url(resolved).get_dialect()
    except sa.exc.NoSuchModuleError:
        raise ConfigurationError(f"{key}: SQLAlchemy has no {family} driver named {driver!r}") from None
    except sa.exc.ArgumentError:
        raise ConfigurationError(f"{key} is not a valid database URL") from None
    if dialect.is_async:
        raise ConfigurationError(f"{key} names the asyncio driver {driver!r}; the extension needs a synchronous one")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise _missing(key, scheme, family, exc.name or driver) from None
    return family, resolved


def display_uri(uri: str) -> str:
    """``uri`` with its password replaced by ``***``, for log lines."""
    if not uri.lower().startswith("mongodb"):
        try:
            return sa.make_url(uri).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return uri.partition("://")[0] + "://***"
    # mongodb://user:password@host1,host2/db?options: the password ends at the last '@' of the host part
    return re.sub(r"^([^:/]+://[^:@/]*):[^/]*@", r"\1:***@", uri)


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
    """The repository for ``uri``, its driver chosen by :func:`resolve_database_uri`."""
    family, resolved = resolve_database_uri(uri)
    return _FACTORIES[family](resolved, mongo_database)
