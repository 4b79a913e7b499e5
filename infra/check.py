"""A structural check of the Bicep files, for machines without the Bicep compiler.

    python -m infra.check [infra/main.bicep]

It parses with the tree-sitter Bicep grammar and reports: syntax errors, names used but never declared,
functions and decorators Bicep does not have, module paths and loaded files that do not exist, module
parameters that are unknown or missing, module outputs read but not declared, and duplicate names.
It does not know resource types: property names and API versions are checked only by `az bicep build`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

_FUNCTION_NAMES = """
any array base64 base64ToJson base64ToString bool coalesce concat contains dataUri dataUriToString dateTimeAdd
dateTimeFromEpoch dateTimeToEpoch deployer deployment empty endsWith environment extensionResourceId filter first
flatten format getSecret groupBy guid indexOf int intersection items join json last lastIndexOf length
listKeys listAccountSas listServiceSas loadFileAsBase64 loadJsonContent loadTextContent loadYamlContent map
managementGroup managementGroupResourceId max min newGuid objectKeys padLeft parseCidr pickZones range reduce
reference replace resourceGroup resourceId shallowMerge skip sort split startsWith string subscription
subscriptionResourceId substring take tenant tenantResourceId toLower toObject toUpper trim union uniqueString
uri uriComponent uriComponentToString utcNow
"""
_DECORATOR_NAMES = """
allowed batchSize description discriminator export metadata maxLength maxValue minLength minValue onlyIfNotExists
sealed secure
"""
FUNCTIONS = frozenset(_FUNCTION_NAMES.split())
DECORATORS = frozenset(_DECORATOR_NAMES.split())
NAMESPACES = frozenset({"az", "sys"})
DECLARATIONS = {"parameter_declaration": "param", "variable_declaration": "var", "resource_declaration": "resource",
                "module_declaration": "module", "output_declaration": "output", "type_declaration": "type"}
_LOADERS = {"loadJsonContent", "loadTextContent", "loadYamlContent", "loadFileAsBase64"}


@cache
def _parser():
    import tree_sitter
    import tree_sitter_bicep

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _text(node) -> str:
    return node.text.decode()


def _string(node) -> str | None:
    """The value of a plain string literal node ('...' without interpolation)."""
    if node is None or node.type != "string" or any(c.type == "interpolation" for c in node.children):
        return None
    return "".join(_text(c) for c in node.children if c.type == "string_content")


def _named(node) -> list:
    return [c for c in node.children if c.is_named and c.type != "comment"]


def _property(obj, key: str):
    """The value node of `key` in an object literal node, or None."""
    for prop in (c for c in obj.children if c.type == "object_property"):
        parts = _named(prop)
        if len(parts) >= 2 and _text(parts[0]).strip("'") == key:
            return parts[1]
    return None


@dataclass
class BicepFile:
    path: Path
    root: object
    declared: dict[str, list[str]] = field(default_factory=dict)  # kind -> names, in order
    required_params: set[str] = field(default_factory=set)
    locals: set[str] = field(default_factory=set)

    def names(self, kind: str) -> list[str]:
        return self.declared.get(kind, [])

    def at(self, node) -> str:
        return f"{self.path}:{node.start_point[0] + 1}:{node.start_point[1] + 1}"


def parse(path: Path) -> BicepFile:
    path = Path(path)
    bicep = BicepFile(path, _parser().parse(path.read_bytes()).root_node)
    for node in _walk(bicep.root):
        kind = DECLARATIONS.get(node.type)
        if kind:
            name = _text(_named(node)[0])
            bicep.declared.setdefault(kind, []).append(name)
            if kind == "param" and len(_named(node)) == 2 and not _text(_named(node)[1]).endswith("?"):
                bicep.required_params.add(name)
        elif node.type in ("loop_variable", "loop_enumerator"):
            bicep.locals.add(_text(node))
        elif node.type == "for_statement" and node.child_by_field_name("initializer") is not None:
            bicep.locals.add(_text(node.child_by_field_name("initializer")))
        elif node.type == "lambda_expression":
            bicep.locals.update(_text(c) for c in _named(node)[:-1] if c.type == "identifier")
    return bicep


def _syntax(bicep: BicepFile) -> list[str]:
    return [f"{bicep.at(n)}: syntax error near {_text(n)[:40]!r}" for n in _walk(bicep.root)
            if n.type == "ERROR" or n.is_missing]


def _duplicates(bicep: BicepFile) -> list[str]:
    seen: dict[str, str] = {}
    out = []
    for kind, names in bicep.declared.items():
        for name in names:
            if kind != "output" and name in seen:
                out.append(f"{bicep.path}: {name!r} declared twice ({seen[name]} and {kind})")
            seen.setdefault(name, kind)
    return out


def _is_reference(node) -> bool:
    """Whether an identifier node names a symbol (rather than declaring one or being a key)."""
    parent = node.parent
    first = _named(parent)[0] if _named(parent) else None
    if parent.type in DECLARATIONS or parent.type == "object_property":
        return node != first
    if parent.type == "call_expression" and parent.child_by_field_name("function") == node:
        return False
    if parent.type == "for_statement" and parent.child_by_field_name("initializer") == node:
        return False
    if parent.type == "resource_expression" and parent.child_by_field_name("resource") == node:
        return False
    return not (parent.type == "lambda_expression" and node != _named(parent)[-1])


def _references(bicep: BicepFile) -> list[str]:
    known = {n for kind, names in bicep.declared.items() if kind != "output" for n in names}
    known |= bicep.locals | NAMESPACES
    out = []
    for node in _walk(bicep.root):
        if node.type == "call_expression" and node.child_by_field_name("function").type == "identifier":
            name = _text(node.child_by_field_name("function"))
            allowed = DECORATORS if node.parent.type == "decorator" else FUNCTIONS
            if name not in allowed:
                out.append(f"{bicep.at(node)}: unknown {'decorator' if allowed is DECORATORS else 'function'} "
                           f"{name!r}")
        elif node.type == "identifier" and _is_reference(node) and _text(node) not in known:
            out.append(f"{bicep.at(node)}: {_text(node)!r} is not declared")
    return out


def _files(bicep: BicepFile) -> list[str]:
    out = []
    for node in _walk(bicep.root):
        function = node.child_by_field_name("function") if node.type == "call_expression" else None
        if function is not None and _text(function) in _LOADERS:
            target = _string(_named(node.child_by_field_name("arguments"))[0])
            if target is not None and not (bicep.path.parent / target).is_file():
                out.append(f"{bicep.at(node)}: {_text(function)} of missing file {target!r}")
    return out


def _modules(bicep: BicepFile, seen: set[Path]) -> list[str]:
    out = []
    outputs_of: dict[str, set[str]] = {}
    for node in (n for n in _walk(bicep.root) if n.type == "module_declaration"):
        name, source, body = _named(node)[0], _string(_named(node)[1]), _named(node)[-1]
        body = _named(body)[-1] if body.type == "if_statement" else body
        target = (bicep.path.parent / (source or "")).resolve()
        if not target.is_file():
            out.append(f"{bicep.at(node)}: module {_text(name)!r}: no file {source!r}")
            continue
        module = parse(target)
        outputs_of[_text(name)] = set(module.names("output"))
        params = _property(body, "params")
        given = {_text(_named(p)[0]).strip("'") for p in params.children if p.type == "object_property"} \
            if params is not None else set()
        for unknown in sorted(given - set(module.names("param"))):
            out.append(f"{bicep.at(node)}: module {_text(name)!r} has no parameter {unknown!r}")
        for missing in sorted(module.required_params - given):
            out.append(f"{bicep.at(node)}: module {_text(name)!r} needs parameter {missing!r}")
        if target not in seen:
            seen.add(target)
            out.extend(problems(target, seen))
    for node in (n for n in _walk(bicep.root) if n.type == "member_expression"):
        inner = node.child_by_field_name("object")
        if inner is not None and inner.type == "member_expression" and _text(inner).split(".")[-1] == "outputs":
            module_name, output = _text(inner).split(".")[0], _text(node.child_by_field_name("property"))
            if module_name in outputs_of and output not in outputs_of[module_name]:
                out.append(f"{bicep.at(node)}: module {module_name!r} has no output {output!r}")
    return out


def problems(path: Path, seen: set[Path] | None = None) -> list[str]:
    """Every problem found in `path` and the modules it uses (each module checked once)."""
    bicep = parse(path)
    seen = seen if seen is not None else {Path(path).resolve()}
    return [*_syntax(bicep), *_duplicates(bicep), *_references(bicep), *_files(bicep), *_modules(bicep, seen)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path(__file__).with_name("main.bicep")
    found = problems(target)
    for line in found:
        print(line)
    print(f"{target}: {len(found)} problem(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
