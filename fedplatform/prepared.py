"""Hot reads compiled once: a queryset's SQL built on first use, then run with new parameters.

On these machines Django spends about 1 ms turning ``Client.objects.select_related("run")
.filter(token_hash=h)`` into SQL and 0.03 ms running it. A device's cheapest request (an idle
poll) makes two or three such reads, so compiling dominated its cost. ``Prepared`` compiles the
queryset once per thread and database, then only executes it and builds the model instances the
way Django's own ``ModelIterable`` does (converters, ``select_related`` populators). The query
is still written with the ORM, so it follows the models and both database backends.

Only plain reads qualify: a filter on parameters given by position, optionally with
``select_related``, slicing and ordering; no annotations, ``prefetch_related`` or ``defer``.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import QuerySet
from django.db.models.query import get_related_populators

M = TypeVar("M")


def _marker(kind: type, index: int) -> Any:
    """A placeholder value of the parameter's type that no real query holds, recognised by
    equality in the compiled parameters (fields convert values, so identity does not survive)."""
    if kind is int:
        return 27_917 + index  # small and positive: in range for every integer field
    if kind is str:
        return f"\x00parameter {index}\x00"
    raise TypeError(f"prepared parameters are int or str, not {kind.__name__}")


class _Compiled:
    def __init__(self, queryset: QuerySet, markers: list) -> None:
        compiler = queryset.query.get_compiler(queryset.db)
        self.sql, params = compiler.as_sql()
        # Each compiled parameter is either one of the markers (filled in per call) or a constant
        # the query itself holds (a status, a limit).
        self.slots = [markers.index(p) if p in markers else None for p in params]
        self.constants = list(params)
        self.compiler = compiler
        self.db = queryset.db
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.model = klass_info["model"]
        self.init_list = [f[0].target.attname for f in select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, select, self.db)
        self.converters = compiler.get_converters([s[0] for s in select[: compiler.col_count]])

    def params(self, args: tuple) -> list:
        return [self.constants[i] if slot is None else args[slot] for i, slot in enumerate(self.slots)]


class Prepared(Generic[M]):
    """``Prepared(lambda h: Client.objects.filter(token_hash=h), str)``, then ``.first(h)``.

    ``build`` receives one placeholder per type given (``int`` or ``str``) and must use each
    as a filter value exactly once; compiling checks that it did.
    """

    def __init__(self, build: Callable[..., QuerySet], *types: type) -> None:
        self._build, self._types, self._arity = build, types, len(types)
        self._local = threading.local()

    def _compiled(self) -> _Compiled:
        # Per thread: a compiler holds its thread's connection, which converts the values.
        compiled = getattr(self._local, "compiled", None)
        if compiled is None:
            markers = [_marker(kind, i) for i, kind in enumerate(self._types)]
            compiled = _Compiled(self._build(*markers), markers)
            used = sorted(s for s in compiled.slots if s is not None)
            if used != list(range(self._arity)):
                raise ValueError(f"each parameter must appear once in the compiled query; found {used}")
            self._local.compiled = compiled
        return compiled

    def all(self, *args: Any) -> list[M]:
        if len(args) != self._arity:
            raise TypeError(f"expected {self._arity} parameter(s), got {len(args)}")
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
