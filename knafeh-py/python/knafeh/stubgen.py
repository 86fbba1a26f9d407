"""Writes the type stub (`.pyi`) of an extension module built with
`#[knafeh_py::pyservice]`:

    python -m knafeh.stubgen MODULE [-o FILE] [--check]

It imports MODULE, finds the generated classes (`{Trait}Client`,
`{Trait}BlockingClient`, `{Trait}Service`) through their static method
`__knafeh_schema__()` (the service's schema as JSON, the format of
`knafeh::schema::ServiceSchema`), and writes, for every service:

- a `TypedDict` per struct (`NotRequired` for `Option` fields), and a type
  alias per enum, newtype, tuple struct or unit struct, in the shapes the
  values take in Python (an enum: its unit variants' names as `Literal`s,
  its other variants as one-key dicts `{"Variant": value}`);
- the async and blocking clients, with each method's exact signature: a
  request given as one dict or as keyword fields (`Unpack[...]`),
  coroutines, `AsyncIterator`/`Iterator` for response streams,
  iterables of requests for request streams, `knafeh.BidiCall` for the
  async bidirectional calls;
- a `Protocol` (`{Trait}Impl`) for a Python implementation, whose methods
  may take the optional `knafeh.CallContext`, and the service class that
  wraps one.

Without `-o`, the stub goes beside the module: `PACKAGE/__init__.pyi` for a
package, `NAME.pyi` next to a single-file module. `-o -` prints it.
`--check` writes nothing and exits with status 1 when the file differs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import keyword
import pathlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

__all__ = ["StubError", "GeneratedClass", "find_classes", "render", "stub_path", "main"]

# The Python type of each primitive format (see `knafeh::schema::Format`).
_PRIMITIVES = {
    "unit": "None",
    "bool": "bool",
    **{t: "int" for t in ("i8", "i16", "i32", "i64", "i128", "u8", "u16", "u32", "u64", "u128")},
    "f32": "float",
    "f64": "float",
    "char": "str",
    "str": "str",
    "bytes": "bytes",
}

# Where each name the stub may use comes from, in the order of the imports.
_IMPORTS = {
    "Any": "typing",
    "AsyncIterable": "typing",
    "AsyncIterator": "typing",
    "Awaitable": "typing",
    "Callable": "typing",
    "Coroutine": "typing",
    "Iterable": "typing",
    "Iterator": "typing",
    "Literal": "typing",
    "Mapping": "typing",
    "Protocol": "typing",
    "Sequence": "typing",
    "final": "typing",
    "overload": "typing",
    "type_check_only": "typing",
    "Never": "typing_extensions",
    "NotRequired": "typing_extensions",
    "TypeAlias": "typing_extensions",
    "TypedDict": "typing_extensions",
    "Unpack": "typing_extensions",
    "BidiCall": "knafeh",
    "CallContext": "knafeh",
    "Metadata": "knafeh",
    "RequestStream": "knafeh",
}

# The builtins the stub uses, which no type may shadow.
_BUILTINS = {"None", "bool", "bytes", "float", "int", "str", "tuple"}

# Keyword arguments of every client method: a request field of the same
# name cannot be passed as a keyword.
_CALL_OPTIONS = ("timeout", "metadata")

# Arrays up to this length are typed as tuples of exactly their length.
_MAX_EXACT_ARRAY = 8


class StubError(Exception):
    """Why a stub cannot be written: names the service, type or class."""


@dataclass
class GeneratedClass:
    """One class made by `#[pyservice]`, found in the module."""

    name: str
    """The class's name in the module, e.g. `GreeterClient`."""
    role: str
    """`"client"`, `"blocking_client"` or `"service"`."""
    prefix: str
    """The trait's name, e.g. `Greeter`."""
    schema: Dict[str, Any]
    """The service schema (`ServiceSchema` as JSON)."""


_ROLES = ("client", "blocking_client", "service")
_SUFFIXES = (("BlockingClient", "blocking_client"), ("Client", "client"), ("Service", "service"))


def find_classes(module: Any) -> List[GeneratedClass]:
    """The generated classes among the module's attributes, by name."""
    found = []
    for name in sorted(vars(module)):
        cls = getattr(module, name)
        if not isinstance(cls, type) or not hasattr(cls, "__knafeh_schema__"):
            continue
        role = "service" if hasattr(cls, "_knafeh_decode") else None
        prefix = None
        for suffix, r in _SUFFIXES:
            if name.endswith(suffix) and (role is None or r == role):
                role, prefix = r, name[: -len(suffix)]
                break
        if role is None or not prefix:
            raise StubError(
                f"{module.__name__}.{name} has __knafeh_schema__ but is not named "
                "{Trait}Client, {Trait}BlockingClient or {Trait}Service"
            )
        try:
            schema = json.loads(cls.__knafeh_schema__())
        except Exception as e:  # the Rust side raises with the SchemaError text
            raise StubError(f"{module.__name__}.{name}.__knafeh_schema__() failed: {e}") from e
        if not isinstance(schema, dict) or not {"name", "methods", "types"} <= schema.keys():
            raise StubError(f"{module.__name__}.{name}.__knafeh_schema__() is not a service schema")
        found.append(GeneratedClass(name, role, prefix, schema))
    return found


def _is_plain_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _ident(text: str) -> str:
    """`text` made into a Python identifier (for names built from variants)."""
    out = re.sub(r"\W", "_", text)
    return "_" + out if not out or out[0].isdigit() else out


def _docstring(doc: str, indent: str) -> List[str]:
    """A docstring's lines, or none for an empty doc."""
    doc = doc.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if not doc:
        return []
    lines = doc.splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    body = [f"{indent}{line}".rstrip() for line in lines[1:]]
    return [f'{indent}"""{lines[0]}', *body, f'{indent}"""']


@dataclass
class _Struct:
    """A struct reached by a request: its TypedDict's name and fields."""

    name: str
    fields: List[Dict[str, Any]]


@dataclass
class _Stub:
    """Renders one module's stub."""

    module: str
    classes: List[GeneratedClass]
    types: Dict[str, Any] = field(default_factory=dict)
    used: Set[str] = field(default_factory=set)
    local: Dict[str, str] = field(default_factory=dict)
    taken: Dict[str, str] = field(default_factory=dict)

    # -- names ------------------------------------------------------------

    def take(self, name: str, what: str) -> None:
        """Claims a module-level name; two things may not share one."""
        if not _is_plain_name(name) or name in _BUILTINS:
            raise StubError(f"{what} is named `{name}`, which cannot be a Python name here")
        if name in self.taken and self.taken[name] != what:
            raise StubError(f"{what} and {self.taken[name]} would both be named `{name}`")
        self.taken[name] = what

    def n(self, name: str) -> str:
        """The local name of an imported name (renamed if a type has it)."""
        self.used.add(name)
        if name not in self.local:
            local = name
            while local in self.taken:
                local = "_" + local
            self.local[name] = local
        return self.local[name]

    # -- type expressions ---------------------------------------------------

    def fmt(self, f: Any) -> str:
        """The Python type of a format (`knafeh::schema::Format` as JSON)."""
        if isinstance(f, str):
            if f not in _PRIMITIVES:
                raise StubError(f"unknown primitive format {f!r}")
            return _PRIMITIVES[f]
        if not isinstance(f, dict) or len(f) != 1:
            raise StubError(f"not a format: {json.dumps(f)}")
        ((kind, arg),) = f.items()
        if kind == "ref":
            if arg not in self.types:
                raise StubError(f"format refers to `{arg}`, which is not among the types")
            return str(arg)
        if kind == "option":
            inner = self.fmt(arg)
            return inner if inner.endswith("| None") or inner == "None" else f"{inner} | None"
        if kind == "seq":
            return f"{self.n('Sequence')}[{self.fmt(arg)}]"
        if kind == "map":
            return f"{self.n('Mapping')}[{self.fmt(arg['key'])}, {self.fmt(arg['value'])}]"
        if kind == "tuple":
            return self.tuple_of([self.fmt(x) for x in arg])
        if kind == "array":
            item, length = self.fmt(arg["item"]), arg["len"]
            if length <= _MAX_EXACT_ARRAY:
                return self.tuple_of([item] * length)
            return f"tuple[{item}, ...]"
        raise StubError(f"unknown format {json.dumps(f)}")

    def coroutine(self, result: str) -> str:
        """What an async call returns: a coroutine (`await` it, or give it
        to `asyncio.create_task`)."""
        return f"{self.n('Coroutine')}[{self.n('Any')}, {self.n('Any')}, {result}]"

    @staticmethod
    def tuple_of(items: Sequence[str]) -> str:
        """A tuple type of exactly these items."""
        return f"tuple[{', '.join(items)}]" if items else "tuple[()]"

    # -- named types --------------------------------------------------------

    def collect_types(self) -> None:
        """Merges every service's types; one name, one definition."""
        owner: Dict[str, str] = {}
        for c in self.classes:
            service = c.schema.get("name", "?")
            for name, container in c.schema.get("types", {}).items():
                if name in self.types and self.types[name] != container:
                    raise StubError(
                        f"type `{name}` differs between {owner[name]} and {service}; "
                        "rename one (#[serde(rename = ...)])"
                    )
                self.types[name] = container
                owner[name] = service
        for name in self.types:
            self.take(name, f"type `{name}`")

    def struct_items(self, fields: List[Dict[str, Any]]) -> List[Tuple[str, str]]:
        """A struct's keys and their types; `Option` fields may be left out."""
        items = []
        for f in fields:
            fmt = f.get("type")
            if isinstance(fmt, dict) and "option" in fmt:
                items.append((f["name"], f"{self.n('NotRequired')}[{self.fmt(fmt)}]"))
            else:
                items.append((f["name"], self.fmt(fmt)))
        return items

    def typed_dict(self, name: str, items: List[Tuple[str, str]], final: bool = False) -> List[str]:
        """A TypedDict: class syntax when every key can be a class
        attribute that shadows nothing the annotations use. `final` ones
        (enum variants) can be told apart with `"Variant" in value`."""
        td = self.n("TypedDict")
        words = set()
        for _, t in items:
            words.update(re.findall(r"\w+", t))
        if all(_is_plain_name(k) and k not in words and k not in self.taken for k, _ in items):
            body = [f"    {k}: {t}" for k, t in items] or ["    pass"]
            decorators = [f"@{self.n('final')}"] if final else []
            return [*decorators, f"@{self.n('type_check_only')}", f"class {name}({td}):", *body]
        entries = [f"        {json.dumps(k)}: {t}," for k, t in items]
        return [f"{name} = {td}(", f'    "{name}",', "    {", *entries, "    },", ")"]

    def container(self, name: str, c: Any) -> List[str]:
        """The definition(s) of one named type."""
        if c == "unit_struct":
            return [f"{name}: {self.n('TypeAlias')} = None"]
        if not isinstance(c, dict) or len(c) != 1:
            raise StubError(f"type `{name}`: not a container: {json.dumps(c)}")
        ((kind, arg),) = c.items()
        if kind == "newtype":
            return [f"{name}: {self.n('TypeAlias')} = {self.fmt(arg)}"]
        if kind == "tuple_struct":
            return [f"{name}: {self.n('TypeAlias')} = {self.tuple_of([self.fmt(x) for x in arg])}"]
        if kind == "struct":
            return self.typed_dict(name, self.struct_items(arg))
        if kind == "enum":
            return self.enum(name, arg)
        raise StubError(f"type `{name}`: unknown container {json.dumps(c)}")

    def enum(self, name: str, variants: List[Dict[str, Any]]) -> List[str]:
        """An enum as Python sees it: unit variants by name, the others as
        `{"Variant": value}` (serde's externally tagged form)."""
        units, parts, defs = [], [], []
        for v in variants:
            vname, shape = v["name"], v["shape"]
            if shape == "unit":
                units.append(json.dumps(vname))
                continue
            wrapper = f"{name}_{_ident(vname)}"
            self.take(wrapper, f"variant `{vname}` of `{name}`")
            ((kind, arg),) = shape.items()
            if kind == "newtype":
                value = self.fmt(arg)
            elif kind == "tuple":
                value = self.tuple_of([self.fmt(x) for x in arg])
            elif kind == "struct":
                value = f"{wrapper}_Fields"
                self.take(value, f"the fields of variant `{vname}` of `{name}`")
                defs += ["", *self.typed_dict(value, self.struct_items(arg))]
            else:
                raise StubError(f"type `{name}`: unknown variant shape {json.dumps(shape)}")
            defs += ["", *self.typed_dict(wrapper, [(vname, value)], final=True)]
            parts.append(wrapper)
        if units:
            parts.insert(0, f"{self.n('Literal')}[{', '.join(units)}]")
        union = " | ".join(parts) if parts else self.n("Never")
        return [f"{name}: {self.n('TypeAlias')} = {union}", *defs]

    def struct_of(self, f: Any) -> Optional[_Struct]:
        """The struct a request format is (through newtypes), if any."""
        seen = set()
        while isinstance(f, dict) and "ref" in f and f["ref"] not in seen:
            seen.add(f["ref"])
            c = self.types.get(f["ref"])
            if isinstance(c, dict) and "struct" in c:
                return _Struct(f["ref"], c["struct"])
            if isinstance(c, dict) and "newtype" in c:
                f = c["newtype"]
                continue
            return None
        return None

    # -- classes ------------------------------------------------------------

    def request_kind(self, m: Dict[str, Any]) -> Tuple[bool, bool]:
        """Whether a method streams its requests, and its responses."""
        kinds = {
            "unary": (False, False),
            "server_streaming": (False, True),
            "client_streaming": (True, False),
            "bidi_streaming": (True, True),
        }
        if m.get("kind") not in kinds:
            raise StubError(f"method `{m.get('name')}`: unknown call kind {m.get('kind')!r}")
        return kinds[m["kind"]]

    def options(self) -> List[str]:
        """The keyword-only call options every client method takes."""
        return [
            "*",
            "timeout: float | None = None",
            f"metadata: {self.n('Metadata')} | None = None",
        ]

    def one_request(self, m: Dict[str, Any]) -> List[List[str]]:
        """The parameter lists of a method taking one request: the request
        as one object and, for a struct, as keyword fields."""
        req = self.fmt(m["request"])
        forms = [["self", f"request: {req}", "/", *self.options()]]
        struct = self.struct_of(m["request"])
        if struct is not None and not any(f["name"] in _CALL_OPTIONS for f in struct.fields):
            forms.append(["self", *self.options(), f"**fields: {self.n('Unpack')}[{struct.name}]"])
        return forms

    def client_method(self, c: GeneratedClass, m: Dict[str, Any]) -> List[str]:
        """One client method (overloads for the two request forms)."""
        blocking = c.role == "blocking_client"
        streams_requests, streams_responses = self.request_kind(m)
        name, doc = m["name"], m.get("doc", "")
        req, resp = self.fmt(m["request"]), self.fmt(m["response"])
        if not streams_requests:
            forms = self.one_request(m)
            if streams_responses:
                ret = f"{self.n('Iterator' if blocking else 'AsyncIterator')}[{resp}]"
            else:
                ret = resp if blocking else self.coroutine(resp)
        else:
            items = f"{self.n('Iterable')}[{req}]"
            if not blocking:
                items += f" | {self.n('AsyncIterable')}[{req}]"
            if blocking and streams_responses:
                ret = f"{self.n('Iterator')}[{resp}]"
            elif streams_responses:
                ret = self.bidi_call_name(c, m) or f"{self.n('BidiCall')}[{req}, {resp}]"
                items += " | None = None"
            else:
                ret = resp if blocking else self.coroutine(resp)
            forms = [["self", f"requests: {items}", "/", *self.options()]]
        out = []
        for params in forms:
            if len(forms) > 1:
                out.append(f"    @{self.n('overload')}")
            out += _def(name, params, ret, doc, "    ")
        return out

    def bidi_call_name(self, c: GeneratedClass, m: Dict[str, Any]) -> Optional[str]:
        """The `BidiCall` subclass typing `send(**fields)` of an async
        bidirectional method whose request is a struct, if it is one."""
        struct = self.struct_of(m["request"])
        if c.role != "client" or struct is None:
            return None
        return c.prefix + "".join(w[:1].upper() + w[1:] for w in m["name"].split("_")) + "Call"

    def bidi_call(self, c: GeneratedClass, m: Dict[str, Any]) -> List[str]:
        """The class of `bidi_call_name`, if the method has one."""
        name = self.bidi_call_name(c, m)
        struct = self.struct_of(m["request"])
        if name is None or struct is None:
            return []
        self.take(name, f"the call type of {c.name}.{m['name']}")
        req, resp = self.fmt(m["request"]), self.fmt(m["response"])
        future = self.coroutine("None")
        doc = _wrap(f"A call of `{c.name}.{m['name']}`: `send()` takes one `{struct.name}` or its fields.", 72)
        lines = [
            f"@{self.n('type_check_only')}",
            f"class {name}({self.n('BidiCall')}[{req}, {resp}]):",
            *_docstring(doc, "    "),
            f"    @{self.n('overload')}  # type: ignore[override]",
            *_def("send", ["self", f"request: {req}", "/"], future, "", "    "),
            f"    @{self.n('overload')}",
            *_def("send", ["self", "/", f"**fields: {self.n('Unpack')}[{struct.name}]"], future, "", "    "),
        ]
        return lines

    def client(self, c: GeneratedClass) -> List[str]:
        """An async or blocking client class."""
        blocking = c.role == "blocking_client"
        what = "blocking" if blocking else "asyncio"
        schema = c.schema
        doc = f"Python ({what}) client of the `{schema['name']}` service."
        if schema.get("doc"):
            doc += "\n\n" + schema["doc"].strip()
        codec = f"{self.n('Literal')}[\"bincode\", \"json\"] | None = None"
        params = [
            "addr: str",
            "*",
            "ca: str | None = None",
            "server_name: str | None = None",
            "insecure: bool = False",
            f"codec: {codec}",
            "timeout: float | None = None",
            "connect_timeout: float | None = None",
            f"compression: {self.n('Literal')}[\"identity\", \"none\", \"gzip\", \"zstd\"] | None = None",
            "zero_rtt: bool = False",
        ]
        connect_doc = _wrap(
            ("Connects (blocking)." if blocking else f"`await {c.name}.connect(addr, ca=...)`.")
            + " The server certificate is verified against `ca` (a PEM file) unless `insecure=True`.",
            72,
        )
        ret = c.name if blocking else self.coroutine(c.name)
        lines = [f"class {c.name}:", *_docstring(doc, "    ")]
        lines += ["    @staticmethod", *_def("connect", params, ret, connect_doc, "    ")]
        lines += ["    @staticmethod", *_def("__knafeh_schema__", [], "str", _SCHEMA_DOC, "    ")]
        for m in schema.get("methods", []):
            lines += self.client_method(c, m)
        return lines

    def impl_protocol(self, c: GeneratedClass) -> List[str]:
        """`{Trait}Impl`: what `{Trait}Service(...)` accepts."""
        name = f"{c.prefix}Impl"
        self.take(name, f"the implementation protocol of {c.name}")
        doc = (
            f"A Python implementation of `{c.schema['name']}`, as `{c.name}` serves it: "
            "one method per service method, `def` or `async def` (a generator or async "
            "generator for a response stream); a request stream arrives as a "
            "`knafeh.RequestStream` (`for` in a `def`, `async for` in an `async def`). "
            "Each method may take a second parameter, the `knafeh.CallContext`."
        )
        lines = [f"@{self.n('type_check_only')}", f"class {name}({self.n('Protocol')}):"]
        lines += _docstring(_wrap(doc, 72), "    ")
        ctx = self.n("CallContext")
        for m in c.schema.get("methods", []):
            streams_requests, streams_responses = self.request_kind(m)
            req, resp = self.fmt(m["request"]), self.fmt(m["response"])
            if streams_requests:
                req = f"{self.n('RequestStream')}[{req}]"
            if streams_responses:
                out = f"{self.n('Iterable')}[{resp}] | {self.n('AsyncIterable')}[{resp}]"
            else:
                out = f"{resp} | {self.n('Awaitable')}[{resp}]"
            call = self.n("Callable")
            ret = f"(\n        {call}[[{req}], {out}]\n        | {call}[[{req}, {ctx}], {out}]\n    )"
            lines += ["    @property", *_def(m["name"], ["self"], ret, m.get("doc", ""), "    ")]
        return lines

    def service(self, c: GeneratedClass) -> List[str]:
        """`{Trait}Service`, which takes a `{Trait}Impl`."""
        impl = f"{c.prefix}Impl"
        doc = (
            f"Serves a Python implementation of `{c.schema['name']}` "
            f"(see `{impl}`): add `{c.name}(impl)` to a `knafeh.Server`."
        )
        lines = [f"class {c.name}:", *_docstring(_wrap(doc, 72), "    ")]
        lines += _def("__init__", ["self", f"implementation: {impl}"], "None", "", "    ")
        lines += ["    @property", *_def("implementation", ["self"], impl, "The wrapped implementation.", "    ")]
        lines += ["    @staticmethod", *_def("__knafeh_schema__", [], "str", _SCHEMA_DOC, "    ")]
        return lines

    # -- the whole file -----------------------------------------------------

    def render(self) -> str:
        """The whole stub: types, call classes, protocols, then classes."""
        self.collect_types()
        for c in self.classes:
            self.take(c.name, f"class {c.name}")
        body: List[List[str]] = []
        for name, container in self.types.items():
            body.append(self.container(name, container))
        impls = set()
        for c in self.classes:
            if c.role == "client":
                for m in c.schema.get("methods", []):
                    if self.request_kind(m) == (True, True):
                        body.append(self.bidi_call(c, m))
            if c.role == "service" and c.prefix not in impls:
                impls.add(c.prefix)
                body.append(self.impl_protocol(c))
        for c in sorted(self.classes, key=lambda c: (c.prefix, _ROLES.index(c.role))):
            body.append(self.service(c) if c.role == "service" else self.client(c))
        return "\n".join([*self.header(), *self.imports(), *_join(body)]) + "\n"

    def header(self) -> List[str]:
        """The module docstring: what the stub is and how to regenerate it."""
        services = sorted({c.schema["name"] for c in self.classes})
        doc = (
            f"Type stubs for `{self.module}`: the classes #[pyservice] generated for "
            f"{', '.join(services)}, and the messages they take and give.\n\n"
            "Generated by knafeh.stubgen from the services' schemas; do not edit. "
            f"Regenerate with:\n\n    python -m knafeh.stubgen {self.module}\n\n"
            "The message types and the `...Impl` protocols exist for type checkers only: "
            "use them in annotations (with `from __future__ import annotations`) or "
            "import them under `typing.TYPE_CHECKING`."
        )
        return [*_docstring(_wrap(doc), ""), ""]

    def imports(self) -> List[str]:
        """The imports of the names the stub used (renamed where a type has the name)."""
        lines = []
        for source in ("typing", "typing_extensions", "knafeh"):
            names = [n for n, s in _IMPORTS.items() if s == source and n in self.used]
            if not names:
                continue
            parts = [n if self.local[n] == n else f"{n} as {self.local[n]}" for n in names]
            lines += _wrap_import(source, parts)
        return lines + ["", ""]


_SCHEMA_DOC = "The service's schema, `knafeh::schema::ServiceSchema` as JSON."


def _def(name: str, params: List[str], ret: str, doc: str, indent: str) -> List[str]:
    """A stub function: on one line when it fits, else a parameter a line."""
    head = f"{indent}def {name}({', '.join(params)}) -> {ret}:"
    if len(head.split("\n")[0]) > 99:
        inner = indent + "    "
        head = "\n".join([f"{indent}def {name}(", *[f"{inner}{p}," for p in params], f"{indent}) -> {ret}:"])
    doc_lines = _docstring(doc, indent + "    ")
    return [head, *doc_lines] if doc_lines else [head + " ..."]


def _join(blocks: List[List[str]]) -> Iterator[str]:
    """Blocks separated by blank lines (two between top-level definitions)."""
    for i, block in enumerate(b for b in blocks if b):
        if i:
            yield ""
            yield ""
        yield from block


def _wrap(text: str, width: int = 76) -> str:
    """Wraps each paragraph of `text` (indented lines are kept as they are)."""
    out = []
    for para in text.split("\n\n"):
        if para.startswith("    "):
            out.append(para)
            continue
        line, lines = "", []
        for word in para.split():
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _wrap_import(source: str, names: List[str]) -> List[str]:
    line = f"from {source} import {', '.join(names)}"
    if len(line) <= 99:
        return [line]
    return [f"from {source} import (", *[f"    {n}," for n in names], ")"]


def render(module_name: str, classes: List[GeneratedClass]) -> str:
    """The stub of a module whose generated classes are `classes`."""
    if not classes:
        raise StubError(f"{module_name} has no class with __knafeh_schema__ (no #[pyservice] classes)")
    return _Stub(module_name, classes).render()


def stub_path(module: Any) -> pathlib.Path:
    """Where the module's stub goes: `__init__.pyi` in a package, else
    `NAME.pyi` beside the module's file."""
    file = getattr(module, "__file__", None)
    if file is None:
        raise StubError(f"{module.__name__} has no file to put a stub beside; pass -o FILE")
    path = pathlib.Path(str(file))
    if hasattr(module, "__path__"):
        return path.parent / "__init__.pyi"
    name = str(module.__name__)
    return path.parent / (name.rpartition(".")[2] + ".pyi")


def main(argv: Optional[List[str]] = None) -> int:
    """The command line; returns the exit status."""
    p = argparse.ArgumentParser(
        prog="python -m knafeh.stubgen",
        description="Writes the .pyi of an extension module built with #[knafeh_py::pyservice].",
    )
    p.add_argument("module", help="the module to import, e.g. greeter")
    p.add_argument("-o", "--output", help="the file to write ('-': standard output); default: beside the module")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file differs")
    args = p.parse_args(argv)
    try:
        module = importlib.import_module(args.module)
        text = render(args.module, find_classes(module))
        if args.output == "-":
            sys.stdout.write(text)
            return 0
        path = pathlib.Path(args.output) if args.output else stub_path(module)
    except (ImportError, StubError) as e:
        print(f"knafeh.stubgen: {e}", file=sys.stderr)
        return 2
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            print(f"knafeh.stubgen: {path} is out of date; regenerate it with "
                  f"python -m knafeh.stubgen {args.module}", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
