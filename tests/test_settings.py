"""The one settings tree (prefrestore.restore.options): every setting's valid and invalid values, generated from its
declaration, are accepted and refused alike by the command line (the real parser of each command that takes it),
the Python API and the HTTP API, with the same one-line message; the tree round-trips; the docs' tables are the
declaration's."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from prefrestore import cli
from prefrestore.restore import options
from prefrestore.restore.options import GROUPS, RestoreSettings, SettingError, Spec, specs

ROOT = Path(__file__).resolve().parents[1]

# Extra values of the text settings (their kind says only "a text"); every other value below comes from the kinds,
# bounds and choices of the declaration.
TEXT_CASES = {
    "model": (["default", "tiny", "some/folder"], ["", "   "]),
    "device": (["cpu", "cuda", "cuda:1", "mps"], ["gpu", "cuda:x", "CPU"]),
    "suffix": (["", "_restored"], ["a/b", "a\\b", "x" * 101]),
}
# The lower edge of max_face_size that the declaration's cross check allows with min_face_size at its default.
EDGE = {"max_face_size": 20.0}


def _cases(name: str, spec: Spec, default) -> tuple[list, list]:
    """(valid values, invalid values) of one setting, as Python / JSON values."""
    lo, hi = spec.minimum, spec.maximum
    valid: list = [default] if default is not None else []
    invalid: list = []
    if spec.nullable:
        valid.append(None)
    else:
        invalid.append(None)
    if spec.kind in ("number", "integer"):
        lo = EDGE.get(name, lo)
        step = 1 if spec.kind == "integer" else 0.5
        if lo is not None:
            valid.append(lo + (1e-6 if spec.low_open else 0))
            invalid.append(lo - step)
            if spec.low_open:
                invalid.append(lo)
        if hi is not None:
            valid.append(hi)
            invalid.append(hi + step)
        invalid += ["abc", True, float("nan"), float("inf"), [1]]
        if spec.kind == "integer":
            valid.append(float(lo if lo is not None else 0))  # an integral number: 2.0 is the integer 2
            invalid.append((lo if lo is not None else 0) + 0.5)
    elif spec.kind == "choice":
        valid += list(spec.choices) + list(spec.aliases or ())
        invalid += ["bogus", 3, True, ""]
    elif spec.kind == "bool":
        valid += [True, False]
        invalid += [1, "yes", "true"]
    elif spec.kind == "text":
        good, bad = TEXT_CASES[name]
        valid += good
        invalid += bad + [3, ["cpu"]]
    elif spec.kind == "indices":
        valid += [[0], [2, 0], [0, 1, 5]]
        invalid += [[], [-1], [1.5], "0,2", "abc", 0]
    elif spec.kind == "weights":
        valid += [{"psnr": 1}, {"ssim": 0.5, "identity_dlib": 1.0}, {r: 1 for r in spec.choices}]
        invalid += [{"musiq": 1}, {"psnr": "x"}, {"psnr": float("nan")}, "psnr=1", [1]]
    else:
        raise AssertionError(spec.kind)
    return valid, invalid


def _cli_text(spec: Spec, value) -> str | None:
    """The command-line spelling of ``value``, or None when the command line cannot say it (null, a bool, a
    JSON type the flag's text never reads as). A string is given as is: the command line reads it as JSON
    would send the value it spells ("0" -> 0), so only strings that spell nothing are the same value in both."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if spec.kind in ("number", "integer", "indices", "weights"):
            try:
                options._parse_text(spec, value)
            except ValueError:
                return value  # spells no value: the same string to both
            return None  # the command line would read a number, a list or a mapping from it
        return value
    if isinstance(value, (int, float)):
        if spec.kind not in ("number", "integer"):
            return None
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, list) and spec.kind == "indices":
        return ",".join(str(i) for i in value) if all(isinstance(i, (int, float)) for i in value) else None
    if isinstance(value, dict) and spec.kind == "weights":
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in value.values()):
            return None
        return ",".join(f"{k}={w!r}" if isinstance(w, float) else f"{k}={w}" for k, w in value.items())
    return None


CASES = [
    pytest.param(name, spec, value, ok, id=f"{name}-{'ok' if ok else 'bad'}-{value!r}"[:80])
    for name, (_, spec, default) in specs().items()
    for ok, values in zip((True, False), _cases(name, spec, default), strict=True)
    for value in values
]


def _python(name: str, value):
    """The Python API: the group's dataclass, then the whole tree from a flat mapping -> (value or None, error)."""
    group = specs()[name][0]
    try:
        got = getattr(GROUPS[group](**{name: value}), name)
    except SettingError as err:
        message = str(err)
        with pytest.raises(SettingError) as again:
            RestoreSettings.from_flat({name: value})
        assert str(again.value) == message
        return None, message
    assert getattr(getattr(RestoreSettings.from_flat({name: value}), group), name) == got
    return got, None


@pytest.fixture
def parse(monkeypatch, tmp_path):
    """``prefrestore COMMAND ... FLAG=TEXT`` through the real command line up to where the command would run ->
    (exit status, stderr lines, the checked settings)."""
    import importlib

    seen = []
    for command in options.COMMANDS:
        module = importlib.import_module(cli.COMMANDS[command][0])
        monkeypatch.setattr(module, "run", lambda args: seen.append(args) or 0)
    inputs = {"restore": ["photo.png", "-o", str(tmp_path / "out")], "serve": [], "eval": ["-o", str(tmp_path / "e")]}

    def run(command: str, argv: list[str], capsys):
        seen.clear()
        code = cli.main([command, *inputs[command], *argv])
        err = capsys.readouterr().err.strip().splitlines()
        return code, err, (seen[-1].settings if seen else None)

    return run


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("requests")
    from serve_helpers import serve

    with serve(tmp_path_factory.mktemp("settings"), detector=None) as (url, _, _):
        yield url


def _http(url: str, name: str, value) -> tuple[int, str]:
    """POST /v1/restore with ``{name: value}`` as the options and a body that is no image: the options are read
    first, so 422 is a refused value and 400 (the image) an accepted one."""
    import requests

    r = requests.post(
        url + "/v1/restore",
        files={"file": ("photo.png", b"not an image")},
        data={"options": json.dumps({name: value})},
        timeout=60,
    )
    return r.status_code, r.json()["detail"]


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("name, spec, value, ok", CASES)
def test_every_door_accepts_and_refuses_alike(name, spec, value, ok, parse, http, capsys):
    got, message = _python(name, value)
    # 1. the declaration's expectation: valid values pass, invalid ones fail with the one message style
    if ok:
        assert message is None, message
    else:
        assert message is not None, f"{name}={value!r} accepted as {got!r}"
        shown = options._text(value)
        assert message.startswith(f"{spec.flag} {shown} ({name}): "), message
        assert "\n" not in message
    # 2. the HTTP API: the same verdict and, for a refusal, the same line (422)
    status, detail = _http(http, name, value)
    if not spec.api:  # the server's own setting (prefrestore serve's flag, or none): no request sets it
        with pytest.raises(SettingError) as refused:
            RestoreSettings.from_request({name: value})
        assert (status, detail) == (422, str(refused.value)) and "set by the server" in detail
    elif message is None:
        assert status == 400 and "image" in detail, (status, detail)  # the options passed; the image did not
    else:
        assert (status, detail) == (422, message)
    # 3. the command line of every command that takes it: exit 2 and the same line, or the same value
    for command in spec.commands:
        if spec.kind == "bool":
            if value is not True and value is not False:
                continue
            argv = [spec.flag] if value else []
        else:
            text = _cli_text(spec, value)
            if text is None:
                continue
            argv = [f"{next(f for f in spec.flags if f.startswith('--'))}={text}"]
        code, err, settings = parse(command, argv, capsys)
        if message is None:
            assert code == 0 and err == [], (command, argv, err)
            assert _same(getattr(getattr(settings, specs()[name][0]), name), got), (command, argv)
        else:
            assert code == 2 and err == [f"error: {message}"], (command, argv, err)


def test_every_setting_has_cases_on_every_door():
    """The table above is not empty for any setting: each has valid and invalid values, and a command-line
    spelling of at least one of each."""
    for name, (_, spec, default) in specs().items():
        valid, invalid = _cases(name, spec, default)
        assert valid and invalid, name
        if spec.kind != "bool":
            assert any(_cli_text(spec, v) is not None for v in valid), name
            assert any(_cli_text(spec, v) is not None for v in invalid), name


def test_the_unified_bounds():
    """One bound each for what the CLI and the API used to bound differently (seed, upscale)."""
    table = specs()
    assert (table["seed"][1].minimum, table["seed"][1].maximum) == (0, 2**31 - 1)
    assert (table["upscale"][1].minimum, table["upscale"][1].maximum) == (0.25, 8)
    with pytest.raises(SettingError, match=re.escape("--seed 2147483648 (seed): must be an integer in 0..2147483647")):
        RestoreSettings.from_flat({"seed": 2**31})
    with pytest.raises(SettingError, match=re.escape("-s 16 (upscale): must be a number in [0.25, 8]")):
        RestoreSettings.from_flat({"upscale": 16})


def test_cross_checks_are_one_line_everywhere(parse, http, capsys):
    """Checks across settings: the fidelity dial against start sigma / guidance (CLI and Python), min/max face
    size (all three doors), all-zero rerank weights with candidates."""
    with pytest.raises(SettingError) as err:
        RestoreSettings.from_flat({"fidelity": 0.5, "start_sigma": 0.2})
    code, lines, _ = parse("restore", ["--fidelity=0.5", "--start-sigma=0.2"], capsys)
    assert code == 2 and lines == [f"error: {err.value}"]
    for flat, argv in [
        ({"min_face_size": 30, "max_face_size": 20}, ["--min-face-size=30", "--max-face-size=20"]),
        ({"candidates": 2, "rerank_weights": {"psnr": 0}}, ["--candidates=2", "--rerank-weights=psnr=0"]),
    ]:
        with pytest.raises(SettingError) as err:
            RestoreSettings.from_flat(flat)
        code, lines, _ = parse("restore", argv, capsys)
        assert code == 2 and lines == [f"error: {err.value}"]
        import requests

        r = requests.post(
            http + "/v1/restore", files={"file": ("p.png", b"x")}, data={"options": json.dumps(flat)}, timeout=60
        )
        assert (r.status_code, r.json()["detail"]) == (422, str(err.value))


def test_the_tree_round_trips_and_passes_whole():
    s = RestoreSettings.from_dict(
        {
            "sampling": {"model": "tiny", "steps": 4, "seed": 7, "device": "cuda:1", "batch_size": 2},
            "photo": {"upscale": 4, "max_faces": 3, "bg_upsampler": "none"},
            "output": {"output_format": "jpg", "suffix": "_r"},
            "control": {"fidelity": 0.5, "faces": [2, 0], "rerank_weights": {"psnr": 1}},
        }
    )
    assert (s.sampling.seed, s.photo.upscale, s.photo.bg_upsampler, s.control.faces) == (7, 4.0, "lanczos", (2, 0))
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d and RestoreSettings.from_dict(d) == s
    assert RestoreSettings.from_dict({}) == RestoreSettings() == RestoreSettings.from_dict(RestoreSettings().to_dict())
    assert RestoreSettings.from_flat(s.flat()) == s
    assert set(d) == {"sampling", "photo", "output", "control"}
    assert all(set(d[g]) == {f.name for f in dataclasses.fields(GROUPS[g])} for g in d)
    with pytest.raises(SettingError, match="unknown group 'colour'"):
        RestoreSettings.from_dict({"colour": {}})
    with pytest.raises(SettingError, match="photo: unknown setting 'seed'"):
        RestoreSettings.from_dict({"photo": {"seed": 1}})


def test_the_flags_are_the_declaration():
    """Each command's parser has exactly the flags of the settings it takes, with the declared defaults."""
    for command in options.COMMANDS:
        parser, subs = cli.build_parser(command)
        actions = {a.dest: a for a in subs[command]._actions}
        for name, (_, spec, default) in specs().items():
            if command in spec.commands:
                a = actions[name]
                assert set(spec.flags) <= set(a.option_strings), (command, name)
                assert a.default == (spec.command_defaults or {}).get(command, default), (command, name)
                assert a.help == spec.help
            else:
                assert name not in actions, (command, name)


def test_the_docs_tables_are_the_declaration():
    """docs/settings.md holds each group's table as settings_table prints it (tools/settings_tables.py writes
    them)."""
    page = (ROOT / "docs" / "settings.md").read_text()
    assert options.render_settings_tables(page) == page, "run python tools/settings_tables.py"
    for group in GROUPS:
        assert options.settings_table(group) in page


def test_the_served_schemas_are_the_declaration(http):
    """The OpenAPI document's RestoreOptions and GET /v1/options' schema (what the page builds its controls from)
    are json_schema(), generated from the declaration."""
    import requests

    schema = {k: v for k, v in options.json_schema().items() if k != "$schema"}
    assert requests.get(http + "/openapi.json").json()["components"]["schemas"]["RestoreOptions"] == schema
    served = requests.get(http + "/v1/options").json()["schema"]
    assert served == json.loads(json.dumps(options.json_schema()))
    assert [k for k, p in served["properties"].items() if p["x-ui"]] == [
        name for name, (_, spec, _) in specs().items() if spec.api and spec.ui
    ]


def test_a_request_starts_from_the_servers_settings():
    """The HTTP API's options change only what a request may set; the rest is the server's (prefrestore serve's
    --model, --device, ...), so a job holds the whole tree it runs with."""
    pytest.importorskip("fastapi")
    from prefrestore.serving.schemas import request_settings

    server = RestoreSettings.from_flat({"model": "tiny", "device": "cuda:1", "batch_size": 2, "steps": 3})
    s = request_settings('{"upscale": 3, "candidates": 2}', server)
    assert (s.sampling, s.photo.upscale, s.control.candidates) == (server.sampling, 3.0, 2)
    assert request_settings(None, server) == server
    with pytest.raises(SettingError, match=re.escape("--batch-size (batch_size): set by the server")):
        request_settings('{"batch_size": 1}', server)
