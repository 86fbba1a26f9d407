"""Generated type stubs (`python -m knafeh.stubgen`): the example's
checked-in stub is what the generator writes; `mypy --strict` accepts the
correct scripts in typing/ and reports each misuse in typing/bad_*.py on
the line, with the error code and text, that the line's `# E: code: text`
comment names (and nothing else); the correct greeter script also runs
against a server, so the stub's promises are the classes' behaviour."""
import asyncio
import collections.abc
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
import types
from collections import defaultdict

import greeter
import knafeh
import knafeh_probe
import pytest
from knafeh import stubgen

ROOT = pathlib.Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "python" / "typing"
SCHEMAS = ROOT / "tests" / "python" / "schemas"
EXAMPLE = ROOT / "examples" / "greeter-py"
GREETER_STUB = EXAMPLE / "python" / "greeter" / "__init__.pyi"
KNAFEH = ROOT / "knafeh-py" / "python" / "knafeh"
MARK = re.compile(r"#\s*E:\s*([a-z-]+):\s*(.*?)\s*$")
LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*?)(?:  \[(?P<code>[a-z-]+)\])?$")


def fake_module(name, schema_file, prefix):
    """A module with the three classes #[pyservice] makes, whose
    `__knafeh_schema__()` returns the schema in `schema_file`."""
    text = (SCHEMAS / schema_file).read_text()
    module = types.ModuleType(name)
    for suffix in ("Client", "BlockingClient", "Service"):
        attrs = {"__knafeh_schema__": staticmethod(lambda: text)}
        if suffix == "Service":
            attrs["_knafeh_decode"] = lambda self, method, codec, payload: None
        setattr(module, prefix + suffix, type(prefix + suffix, (), attrs))
    return module


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory):
    """One `mypy --strict` run over typing/, the greeter stub and the
    example's scripts, knafeh's stub and stubgen, and the stubs generated
    from schemas/shapes.json and from the probe module: the errors (with
    their notes) by file name (typing/) or path, and line."""
    tmp = tmp_path_factory.mktemp("stubs")
    shapes = tmp / "shapes"
    shapes.mkdir()
    (shapes / "__init__.py").write_text("")
    module = fake_module("shapes", "shapes.json", "Shapes")
    (shapes / "__init__.pyi").write_text(stubgen.render("shapes", stubgen.find_classes(module)))
    # A real #[pyservice] module with enums, bytes and nested types.
    (tmp / "knafeh_probe.pyi").write_text(stubgen.render("knafeh_probe", stubgen.find_classes(knafeh_probe)))
    env = dict(os.environ)
    # The stubs of this tree, whichever tree the venv's packages point at.
    env["MYPYPATH"] = os.pathsep.join(
        [str(tmp), str(ROOT / "examples" / "greeter-py" / "python"), str(ROOT / "knafeh-py" / "python")]
    )
    cmd = [
        sys.executable, "-m", "mypy", "--strict", "--no-color-output", "--no-error-summary",
        "--show-error-codes", "--hide-error-context", "--cache-dir", str(tmp / ".mypy_cache"),
        str(TYPING), str(shapes / "__init__.pyi"), str(tmp / "knafeh_probe.pyi"), str(GREETER_STUB),
        str(KNAFEH / "__init__.pyi"), str(KNAFEH / "stubgen.py"),
        str(EXAMPLE / "client.py"), str(EXAMPLE / "server.py"),
    ]
    out = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    report = defaultdict(list)
    for raw in out.stdout.splitlines():
        m = LINE.match(raw)
        assert m, f"unparsed mypy line: {raw}"
        path = pathlib.Path(m["path"])
        key = (path.name if path.resolve().parent == TYPING else str(path), int(m["line"]))
        if m["kind"] == "error":
            report[key].append([m["code"], m["text"]])
        elif report[key]:
            report[key][-1][1] += "\n" + m["text"]
    return report


def test_stubs_stubgen_and_example_pass_mypy_strict(mypy_report):
    # typing/ files are keyed by bare name; everything else by its path.
    others = {k: v for k, v in mypy_report.items() if os.sep in k[0]}
    assert others == {}


@pytest.mark.parametrize("script", sorted(p.name for p in TYPING.glob("*.py")))
def test_mypy_reports_exactly_the_marked_errors(mypy_report, script):
    expected = {}
    for n, line in enumerate((TYPING / script).read_text().splitlines(), 1):
        m = MARK.search(line)
        if m:
            expected[n] = (m[1], m[2])
    if script.startswith("ok_"):
        assert not expected
    else:
        assert expected, f"{script} marks no expected error"
    actual = {line: errors for (name, line), errors in mypy_report.items() if name == script}
    assert set(actual) == set(expected), f"errors on lines {sorted(actual)}: {actual}"
    for line, (code, text) in expected.items():
        assert any(c == code and text in t for c, t in actual[line]), (line, code, text, actual[line])


def test_greeter_stub_is_what_the_generator_writes(tmp_path):
    run = [sys.executable, "-m", "knafeh.stubgen", "greeter"]
    printed = subprocess.run([*run, "-o", "-"], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == GREETER_STUB.read_text(), "regenerate: python -m knafeh.stubgen greeter"
    assert subprocess.run([*run, "-o", str(GREETER_STUB), "--check"], timeout=60).returncode == 0
    stale = tmp_path / "stale.pyi"
    stale.write_text(printed.stdout.replace("name: str", "name: int"))
    check = subprocess.run([*run, "-o", str(stale), "--check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    assert "out of date" in check.stderr and "python -m knafeh.stubgen greeter" in check.stderr


def test_schema_of_the_generated_classes():
    """All three classes give the service's schema; the hand-written
    fixture the generator's own tests use matches it."""
    schemas = [
        json.loads(cls.__knafeh_schema__())
        for cls in (greeter.GreeterClient, greeter.GreeterBlockingClient, greeter.GreeterService)
    ]
    assert schemas[0] == schemas[1] == schemas[2]
    assert schemas[0] == json.loads((SCHEMAS / "greeter.json").read_text())


def test_ok_greeter_runs_as_typed(tmp_path):
    sys.path.insert(0, str(TYPING))
    try:
        ok = importlib.import_module("ok_greeter")
    finally:
        sys.path.remove(str(TYPING))
    ca, cert, key = knafeh.dev_cert(str(tmp_path))

    async def go(service):
        server = knafeh.Server("127.0.0.1:0", cert=cert, key=key)
        server.add_service(service)
        addr = await server.start()
        try:
            client = await greeter.GreeterClient.connect(addr, ca=ca)
            pending = client.say_hello(name="Ada")
            assert isinstance(pending, collections.abc.Coroutine)  # as the stub says
            await asyncio.create_task(pending)
            got_async = await ok.use_async(addr, ca)
            got_blocking = await asyncio.to_thread(ok.use_blocking, addr, ca)
        finally:
            await server.stop()
        return got_async, got_blocking

    for service in ok.services():
        got_async, got_blocking = asyncio.run(asyncio.wait_for(go(service), 60))
        assert got_async == [
            "Hello, Ada! (say_hello)", "Hello, Bo! (say_hello)", [1, 2, 3],
            {"sum": 3, "count": 2}, {"sum": 10, "count": 1}, "Hello, Cy! (chat)",
            ["Hello, Di! (chat)"], ["Hello, Ed! (chat)"],
            ["Hello, Fa! (say_hello)", "Hello, Gu! (say_hello)"],
        ]
        assert got_blocking == ["Hello, Ada! (say_hello)", [1, 2], {"sum": 9, "count": 2}, ["Hello, Bo! (chat)"]]


def schema(**types_):
    return {"name": "t.T", "doc": "", "methods": [], "types": types_}


@pytest.mark.parametrize(
    "classes, message",
    [
        ([], "has no class with __knafeh_schema__"),
        ([("TClient", schema(A={"struct": [{"name": "b", "type": {"ref": "B"}}]}))], "refers to `B`"),
        ([("TClient", schema(A="unit_struct")), ("UClient", {**schema(A={"newtype": "u8"}), "name": "u.U"})],
         "type `A` differs between t.T and u.U"),
        ([("TClient", schema(int="unit_struct"))], "type `int` is named `int`"),
        ([("TClient", schema(TClient="unit_struct"))], "would both be named `TClient`"),
        ([("TClient", schema(A={"struct": [{"name": "b", "type": "u256"}]}))], "unknown primitive format 'u256'"),
    ],
)
def test_stubgen_refuses_what_it_cannot_write(classes, message):
    found = [stubgen.GeneratedClass(name, "client", name[:-6], s) for name, s in classes]
    with pytest.raises(stubgen.StubError, match=re.escape(message)):
        stubgen.render("t", found)


def test_stubgen_finds_classes_by_role():
    found = stubgen.find_classes(fake_module("shapes", "shapes.json", "Shapes"))
    assert [(c.name, c.role, c.prefix) for c in found] == [
        ("ShapesBlockingClient", "blocking_client", "Shapes"),
        ("ShapesClient", "client", "Shapes"),
        ("ShapesService", "service", "Shapes"),
    ]


def test_stubgen_refuses_a_class_whose_schema_is_not_one():
    module = types.ModuleType("odd")
    module.OddClient = type("OddClient", (), {"__knafeh_schema__": staticmethod(lambda: '"odd.Odd"')})
    with pytest.raises(stubgen.StubError, match=r"odd.OddClient.__knafeh_schema__\(\) is not a service schema"):
        stubgen.find_classes(module)
