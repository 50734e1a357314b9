"""Hot statements compiled once: a queryset's SQL built on first use, then run with new parameters.

On these machines Django spends about 1 ms turning ``Client.objects.select_related("run")
.filter(token_hash=h)`` into SQL and 0.03 ms running it. A device's cheapest request (an idle
poll) makes two or three such reads, so compiling dominated its cost. ``Prepared`` compiles the
queryset once per thread and database, then only executes it and builds the model instances the
way Django's own ``ModelIterable`` does (converters, ``select_related`` populators). The query
is still written with the ORM, so it follows the models and both database backends.

Only plain reads qualify: a filter on parameters given by position, optionally with
``select_related``, slicing and ordering; no annotations, ``prefetch_related`` or ``defer``.
``PreparedUpdate`` does the same for a filtered ``update()``, and ``PreparedInsert`` for
``create()`` (no ``save`` signals are sent: nothing here listens to them).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar, cast

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.models.sql import UpdateQuery

M = TypeVar("M", bound=Model)


def _marker(kind: type, index: int) -> Any:
    """A placeholder value of the parameter's type that no real query holds, recognised by
    equality in the compiled parameters (fields convert values, so identity does not survive)."""
    if kind is int:
        return 27_917 + index  # small and positive: in range for every integer field
    if kind is float:
        return 27_917.25 + index
    if kind is str:
        return f"\x00parameter {index}\x00"
    if kind is datetime:
        return datetime(1970, 1, 2, 3, 4, 5, 6 + index, tzinfo=timezone.utc)
    raise TypeError(f"prepared parameters are int, float, str or datetime, not {kind.__name__}")


def _adapter(kind: type, db: str) -> Callable[[Any], Any]:
    """What the compiled parameters hold for a value: datetimes in the backend's form."""
    if kind is datetime:
        return connections[db].ops.adapt_datetimefield_value
    return lambda value: value


def _slots(params: list | tuple, markers: list, adapters: list) -> list[int | None]:
    wanted = [adapt(m) for adapt, m in zip(adapters, markers)]
    slots = [wanted.index(p) if p in wanted else None for p in params]
    used = sorted(s for s in slots if s is not None)
    if used != list(range(len(markers))):
        raise ValueError(f"each parameter must appear once in the compiled query; found {used}")
    return slots


# Beyond a 64-bit integer no column holds the value, and SQLite refuses to bind it: a lookup
# by such a number (an id a device made up) finds nothing, as the ORM's does.
_INT_RANGE = range(-(2**63), 2**63)


def _out_of_range(types: tuple, args: tuple) -> bool:
    return any(kind is int and isinstance(arg, int) and arg not in _INT_RANGE for kind, arg in zip(types, args))


def _fill(slots: list[int | None], constants: list, adapters: list, args: tuple) -> list:
    """The parameters of one execution: the call's values where the markers were, adapted."""
    return [constants[i] if slot is None else adapters[slot](args[slot]) for i, slot in enumerate(slots)]


class _Compiled:
    def __init__(self, queryset: QuerySet, markers: list, types: tuple) -> None:
        compiler = queryset.query.get_compiler(queryset.db)
        self.sql, params = compiler.as_sql()
        self.db = queryset.db
        # Each compiled parameter is either one of the markers (filled in per call) or a constant
        # the query itself holds (a status, a limit).
        self.adapters = [_adapter(kind, self.db) for kind in types]
        self.slots = _slots(params, markers, self.adapters)
        self.constants = list(params)
        self.compiler = compiler
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.model = klass_info["model"]
        self.init_list = [f[0].target.attname for f in select[self.start:self.end]]
        # django-stubs describe a later Django's signature (with fetch_mode); 5.2 takes these three.
        self.populators = get_related_populators(klass_info, select, self.db)  # type: ignore[call-arg]
        self.converters = compiler.get_converters([s[0] for s in select[: compiler.col_count]])

    def params(self, args: tuple) -> list:
        return _fill(self.slots, self.constants, self.adapters, args)


class Prepared(Generic[M]):
    """``Prepared(lambda h: Client.objects.filter(token_hash=h), str)``, then ``.first(h)``.

    ``build`` receives one placeholder per type given (``int``, ``float``, ``str`` or
    ``datetime``) and must use each as a filter value exactly once; compiling checks that it did.
    """

    def __init__(self, build: Callable[..., QuerySet[M]], *types: type) -> None:
        self._build, self._types, self._arity = build, types, len(types)
        self._local = threading.local()

    def _compiled(self) -> _Compiled:
        # Per thread: a compiler holds its thread's connection, which converts the values.
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            markers = [_marker(kind, i) for i, kind in enumerate(self._types)]
            compiled = self._local.compiled = _Compiled(self._build(*markers), markers, self._types)
        return compiled

    def all(self, *args: Any) -> list[M]:
        if len(args) != self._arity:
            raise TypeError(f"expected {self._arity} parameter(s), got {len(args)}")
        if _out_of_range(self._types, args):
            return []
        compiled = self._compiled()
        with connections[compiled.db].cursor() as cursor:
            cursor.execute(compiled.sql, compiled.params(args))
            rows = cursor.fetchall()
        if not rows:
            return []
        if compiled.converters:
            rows = compiled.compiler.apply_converters(rows, compiled.converters)
        objects = []
        for row in rows:
            obj = compiled.model.from_db(compiled.db, compiled.init_list, row[compiled.start:compiled.end])
            for populator in compiled.populators:
                populator.populate(row, obj)
            objects.append(obj)
        return objects

    def first(self, *args: Any) -> M | None:
        found = self.all(*args)
        return found[0] if found else None


class PreparedUpdate:
    """``PreparedUpdate(lambda pk, status: (Client.objects.filter(pk=pk), {"status": status}), int, str)``;
    ``.run(pk, status)`` returns the number of rows updated, as ``update()`` does.

    ``build`` receives one placeholder per type and returns the queryset to update and the new
    values; each placeholder must be used exactly once, as a filter or a new value. Values may also
    be constants or expressions (``F("n") + 1``). An integer beyond 64 bits matches no row.
    """

    def __init__(self, build: Callable[..., tuple[QuerySet, dict]], *types: type) -> None:
        self._build, self._types = build, types
        self._local = threading.local()

    def _compiled(self) -> tuple[str, list, list, list, str]:
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            markers = [_marker(kind, i) for i, kind in enumerate(self._types)]
            queryset, values = self._build(*markers)
            query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
            query.add_update_values(values)
            sql, params = query.get_compiler(queryset.db).as_sql()
            adapters = [_adapter(kind, queryset.db) for kind in self._types]
            slots = _slots(params, markers, adapters)
            compiled = self._local.compiled = (sql, slots, list(params), adapters, queryset.db)
        return compiled

    def run(self, *args: Any) -> int:
        if len(args) != len(self._types):
            raise TypeError(f"expected {len(self._types)} parameter(s), got {len(args)}")
        if _out_of_range(self._types, args):
            return 0
        sql, slots, constants, adapters, db = self._compiled()
        params = _fill(slots, constants, adapters, args)
        with connections[db].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount


class PreparedInsert(Generic[M]):
    """``PreparedInsert(ClientEvent).create(client=c, to_status="ready", ...)``: one INSERT, as
    ``Model.objects.create`` makes it (defaults, ``auto_now_add``, the new primary key), built once."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._local = threading.local()

    def _compiled(self, db: str) -> tuple[str, list, bool]:
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            connection = connections[db]
            meta = self.model._meta
            fields = [f for f in meta.local_concrete_fields if f is not meta.pk or not f.db_returning]
            quote = connection.ops.quote_name
            columns = ", ".join(quote(str(f.column)) for f in fields)
            returning = connection.features.can_return_columns_from_insert
            sql = (
                f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
                + (f" RETURNING {quote(str(self._pk_column))}" if returning else "")
            )
            compiled = self._local.compiled = (sql, fields, returning)
        return compiled

    @property
    def _pk_column(self) -> str:
        return str(self.model._meta.pk.column) if self.model._meta.pk is not None else "id"

    def create(self, **kwargs: Any) -> M:
        obj = self.model(**kwargs)
        db = router.db_for_write(self.model)
        sql, fields, returning = self._compiled(db)
        connection = connections[db]
        params = [f.get_db_prep_save(f.pre_save(obj, True), connection=connection) for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if returning:
                pk = cursor.fetchone()[0]
            else:
                pk = connection.ops.last_insert_id(cursor, self.model._meta.db_table, self._pk_column)
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = db
        return obj
