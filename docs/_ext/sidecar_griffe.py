"""A Griffe extension for sidecar's API reference (loaded by ``mkdocs.yml``).

Three jobs, run once the ``sidecar`` package is loaded:

1. **Sphinx roles to links.**  The docstrings follow the house style (Google
   sections with Sphinx roles such as ``:class:`~sidecar.KernelDied```), which
   Markdown would show verbatim.  A role naming something the reference
   documents becomes an autorefs link to its public path
   (``[`KernelDied`][sidecar.KernelDied]``), looked up the way Sphinx does:
   from the documented object outwards, then in ``sidecar`` and
   ``sidecar.wire``.  A role naming anything else (a private helper, or
   ``:func:`os.replace```: the build has no network for other projects'
   inventories) becomes plain code.  A role that names nothing at all is a
   warning, so ``mkdocs build --strict`` fails on it.
2. **Every public name documented.**  Each name in ``sidecar.__all__`` and
   ``sidecar.wire.__all__``, and each public method and property of the
   classes among them, must have a docstring; a missing one is a warning, so
   the strict build fails.
3. **Readable classes.**  A msgspec ``Struct`` gets the ``__init__`` msgspec
   gives it, so its fields show as one signature (the undocumented ones are
   not repeated as members); an attribute set straight from an ``__init__``
   parameter shows that parameter's type rather than ``x = x``; private base
   classes are not listed as bases.  Presentation only: nothing is invented
   that the code does not do.
"""

from __future__ import annotations

import builtins
import importlib.util
import re
from typing import Any

import griffe

logger = griffe.get_logger("sidecar_griffe")

_ROLE = re.compile(r":(?:py:)?(class|meth|func|data|attr|exc|mod|obj|const):`(~?)([^`<>]+)`")
_CALLABLE_ROLES = frozenset({"meth", "func"})
_PUBLIC_NAMESPACES = ("sidecar", "sidecar.wire", "sidecar.bench")


def _walk(obj: griffe.Object) -> Any:
    """Every object defined in ``obj`` (aliases, i.e. imports, are skipped)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _is_external(target: str) -> bool:
    """Whether ``target`` names something outside sidecar (stdlib, msgspec, anyio...)."""
    head = target.split(".", 1)[0]
    if head == "sidecar":
        return False
    if hasattr(builtins, head):
        return True
    try:
        return importlib.util.find_spec(head) is not None
    except (ImportError, ValueError):
        return False


def _lineage(cls: griffe.Object) -> list[griffe.Object]:
    """``cls`` and its resolvable base classes, most derived first."""
    try:
        return [cls, *cls.mro()]  # type: ignore[attr-defined]
    except (ValueError, griffe.AliasResolutionError):
        return [cls]


def _is_error(cls: griffe.Object) -> bool:
    """Whether ``cls`` is one of sidecar's errors: the reference shows their
    attributes in the docstring's ``Attributes`` section, not as members."""
    return any(c.path == "sidecar._exceptions.SidecarError" for c in _lineage(cls))


def _is_struct(lineage: list[griffe.Object]) -> bool:
    return any(
        getattr(base, "canonical_path", "") == "msgspec.Struct"
        for cls in lineage
        for base in cls.bases  # type: ignore[attr-defined]
    )


_FIELD_DEFAULT = re.compile(r"^(?:msgspec\.)?field\((?P<args>.*)\)$", re.DOTALL)


def _struct_default(value: Any) -> Any:
    """A field's default as the constructor sees it (``field(default_factory=X)`` -> ``X()``)."""
    match = _FIELD_DEFAULT.match(str(value)) if value is not None else None
    if match is None:
        return value
    factory = re.search(r"default_factory=([\w.]+)", match["args"])
    if factory:
        return f"{factory[1]}()"
    default = re.search(r"default=(.+)$", match["args"])
    return default[1] if default else None


def _struct_fields(cls: griffe.Object) -> list[griffe.Attribute]:
    return [
        member
        for name, member in cls.members.items()
        if not name.startswith("_")
        and not member.is_alias
        and member.is_attribute
        and member.annotation is not None
        and "instance-attribute" in member.labels
        and "property" not in member.labels
    ]


def _tidy_class(cls: griffe.Object) -> None:
    """Job 3, for one class (see the module docstring)."""
    lineage = _lineage(cls)
    if _is_struct(lineage) and "__init__" not in cls.members:
        kw_only = any(c.keywords.get("kw_only") == "True" for c in lineage)  # type: ignore[attr-defined]
        kind = (
            griffe.ParameterKind.keyword_only
            if kw_only
            else griffe.ParameterKind.positional_or_keyword
        )
        fields: dict[str, griffe.Parameter] = {}
        for owner in reversed(lineage):
            for field in _struct_fields(owner):
                fields[field.name] = griffe.Parameter(
                    field.name,
                    annotation=field.annotation,
                    kind=kind,
                    default=_struct_default(field.value),
                )
        self_parameter = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
        init = griffe.Function(
            "__init__",
            lineno=0,
            endlineno=0,
            parent=cls,  # type: ignore[arg-type]
            parameters=griffe.Parameters(self_parameter, *fields.values()),
            returns="None",
        )
        cls.set_member("__init__", init)
        for field in _struct_fields(cls):
            if field.docstring is None:
                cls.del_member(field.name)
    init = cls.members.get("__init__")
    if init is not None and init.is_function and not init.is_alias:
        parameters = {p.name: p for p in init.parameters}  # type: ignore[attr-defined]
        for member in cls.members.values():
            if member.is_alias or not member.is_attribute:
                continue
            given = parameters.get(str(member.value)) if member.value is not None else None
            if given is not None and str(member.value) == member.name:
                member.value = None
                if member.annotation is None:
                    member.annotation = given.annotation


class SidecarReference(griffe.Extension):
    """See the module docstring."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "sidecar":
            return
        collection = loader.modules_collection
        self._documented = self._public_paths(collection)
        for obj in _walk(pkg):
            if obj.is_module and obj.name.startswith("_"):
                continue  # a private module's own docstring is never rendered
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(obj, obj.docstring.value, collection)
        self._check_coverage(collection)
        classes = [obj for obj in _walk(pkg) if obj.is_class]
        for cls in classes:
            _tidy_class(cls)
        for cls in classes:  # last: the passes above need the whole hierarchy
            cls.bases = [  # type: ignore[attr-defined]
                base for base in cls.bases if not str(base).rsplit(".", 1)[-1].startswith("_")
            ]

    def _public_paths(self, collection: griffe.ModulesCollection) -> dict[str, str]:
        """Canonical path -> public path of everything the API reference documents.

        That is the exported names (``sidecar.client._kernel.Kernel`` ->
        ``sidecar.Kernel``; the first namespace wins for a name both export)
        and the public members of the exported classes.
        """
        paths: dict[str, str] = {namespace: namespace for namespace in _PUBLIC_NAMESPACES}
        for namespace in _PUBLIC_NAMESPACES:
            module = collection.get_member(namespace)
            for export in module.exports or []:
                name = export if isinstance(export, str) else export.name
                member = module.get_member(name)
                target = member.final_target if member.is_alias else member
                public = f"{namespace}.{name}"
                paths.setdefault(target.path, public)
                if target.is_class and not _is_error(target):
                    for child in target.members:
                        if not child.startswith("_"):
                            paths.setdefault(
                                f"{target.path}.{child}", f"{paths[target.path]}.{child}"
                            )
        return paths

    # -- 1. roles ------------------------------------------------------------------

    def _lookup(self, collection: griffe.ModulesCollection, path: str) -> griffe.Object | None:
        try:
            found = collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
        return found  # type: ignore[no-any-return]

    def _resolve(
        self, obj: griffe.Object, target: str, collection: griffe.ModulesCollection
    ) -> str | None:
        """The path of what ``target`` names, seen from ``obj``; None if nothing."""
        candidates = []
        if target.startswith("sidecar"):
            candidates.append(target)
        scope: griffe.Object | None = obj
        while scope is not None:
            candidates.append(f"{scope.path}.{target}")
            scope = scope.parent
        candidates += [f"{namespace}.{target}" for namespace in _PUBLIC_NAMESPACES]
        for path in candidates:
            found = self._lookup(collection, path)
            if found is not None:
                # An import of another project (``hashlib`` in a module) is not ours.
                return found.target_path if found.is_alias else found.path  # type: ignore[attr-defined]
        return None

    def _rewrite(self, obj: griffe.Object, text: str, collection: griffe.ModulesCollection) -> str:
        def replace(match: re.Match[str]) -> str:
            role, tilde, target = match.groups()
            target = target.strip()
            shown = target.rsplit(".", 1)[-1] if tilde else target
            if role in _CALLABLE_ROLES:
                shown += "()"
            path = self._resolve(obj, target, collection)
            if path is not None and path in self._documented:
                return f"[`{shown}`][{self._documented[path]}]"
            if path is None and not _is_external(target):
                logger.warning("%s: the docstring names %r, which does not exist", obj.path, target)
            return f"`{shown}`"

        return _ROLE.sub(replace, text)

    # -- 2. coverage ------------------------------------------------------------------

    def _check_coverage(self, collection: griffe.ModulesCollection) -> None:
        for namespace in _PUBLIC_NAMESPACES:
            module = collection.get_member(namespace)
            exported = module.exports or []
            for name in exported:
                name = name if isinstance(name, str) else name.name
                member = module.get_member(name)
                target = member.final_target if member.is_alias else member
                if not target.has_docstring:
                    logger.warning("%s.%s has no docstring", namespace, name)
                if target.is_class:
                    self._check_class(f"{namespace}.{name}", target)

    def _check_class(self, public_path: str, cls: griffe.Object) -> None:
        for name, member in cls.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            is_property = member.is_attribute and "property" in member.labels
            if (member.is_function or is_property) and not member.has_docstring:
                logger.warning("%s.%s has no docstring", public_path, name)
