"""json_encode: the bytes JS JSON.stringify writes (numbers included), and no NaN or Infinity ever written."""

from __future__ import annotations

import json
import math
import random
import shutil
import struct
import subprocess

import pytest

from daycare.storage.facade import Storage
from daycare.storage.json_values import frozen, js_number, json_decode, json_encode
from daycare.storage.repositories.history import HistoryRecord
from tests.storage.helpers import agent_record, owner_id
from tests.storage.raw_rows import sql_rows

# What node 20 prints for `JSON.stringify(x)`.
JS_FORMS = [
    (0.0, "0"),
    (-0.0, "0"),
    (2.0, "2"),
    (-2.0, "-2"),
    (0.1, "0.1"),
    (0.5, "0.5"),
    (-1.25e-7, "-1.25e-7"),
    (1e-7, "1e-7"),
    (1e-6, "0.000001"),
    (1.5e-6, "0.0000015"),
    (1e-5, "0.00001"),
    (-0.001, "-0.001"),
    (1e21, "1e+21"),
    (1e20, "100000000000000000000"),
    (1e16, "10000000000000000"),
    (123456789012345680000.0, "123456789012345680000"),
    (9.999999999999999e20, "999999999999999900000"),
    (1.5e300, "1.5e+300"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (2.0**53, "9007199254740992"),
    (2.0**53 + 2, "9007199254740994"),
    (12345.678, "12345.678"),
    (100.0, "100"),
    (1.0000000000000002, "1.0000000000000002"),
    (0.30000000000000004, "0.30000000000000004"),
    (4.35, "4.35"),
    (123e-20, "1.23e-18"),
]


@pytest.mark.parametrize(("value", "expected"), JS_FORMS)
def test_floats_are_written_as_js_writes_them(value: float, expected: str) -> None:
    assert json_encode(value) == expected
    assert json_encode([value]) == f"[{expected}]"
    assert json_encode({"k": {"n": [1, value]}}) == f'{{"k":{{"n":[1,{expected}]}}}}'
    assert float(json.loads(expected)) == value  # the digits read back as the same double


def test_only_numbers_change_never_text_that_looks_like_one() -> None:
    value = {"a": "1.0", "b": "x:1.5e-07,", "c": 1.0, "d": [-0.0, 2.5, "[3.0]"], "e": 'q"1.0"', "f": "\\", "g": 10}
    assert (
        json_encode(value)
        == '{"a":"1.0","b":"x:1.5e-07,","c":1,"d":[0,2.5,"[3.0]"],"e":"q\\"1.0\\"","f":"\\\\","g":10}'
    )
    assert json_encode(frozen(value)) == json_encode(value)
    # Ints, bools and text are written as the C encoder writes them.
    assert (
        json_encode({"n": 10**20, "t": True, "z": None, "s": "é🍳"})
        == '{"n":100000000000000000000,"t":true,"z":null,"s":"é🍳"}'
    )


def test_js_number_leaves_ints_alone() -> None:
    assert js_number("12") == "12"
    assert js_number("-3") == "-3"


def random_doubles(count: int, seed: int) -> list[float]:
    """Doubles of every magnitude: random bit patterns, decimals with few digits, and integers."""
    rng = random.Random(seed)
    values: list[float] = []
    while len(values) < count:
        kind = len(values) % 3
        if kind == 0:
            value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        elif kind == 1:
            value = round(rng.uniform(-1000, 1000), rng.randint(0, 6)) * 10.0 ** rng.randint(-25, 25)
        else:
            value = float(rng.randint(-(10 ** rng.randint(1, 24)), 10 ** rng.randint(1, 24)))
        if math.isfinite(value):
            values.append(value)
    return values


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_random_floats_match_node_json_stringify() -> None:
    values = random_doubles(3000, seed=20260301)
    bits = [struct.pack("<d", value).hex() for value in values]
    script = (
        "const bits = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const view = new DataView(new ArrayBuffer(8));"
        "const out = bits.map(h => { for (let i = 0; i < 8; i++) view.setUint8(i, parseInt(h.substr(2 * i, 2), 16));"
        " return view.getFloat64(0, true); });"
        "process.stdout.write(JSON.stringify(out));"
    )
    result = subprocess.run(
        ["node", "-e", script], input=json.dumps(bits), capture_output=True, text=True, timeout=60, check=True
    )
    assert json_encode(values) == result.stdout
    assert [float(number) for number in json.loads(result.stdout)] == values


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), r"^data is NaN, which JSON cannot hold"),
        ({"scores": [1, 2, float("inf")]}, r"^data\.scores\[2\] is Infinity, which JSON cannot hold"),
        ({"a": {"b": -math.inf}}, r"^data\.a\.b is -Infinity"),
        ([{"x": 1}, {"x": [0.5, math.nan]}], r"^data\[1\]\.x\[1\] is NaN"),
        ({math.nan: 1}, r"^data\.nan is NaN"),
    ],
)
def test_nan_and_infinity_are_refused_naming_their_place(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        json_encode(value, "data")


def test_values_json_cannot_hold_are_refused_naming_their_place() -> None:
    with pytest.raises(TypeError, match=r"^data\.tags is a set, which JSON cannot hold$"):
        json_encode({"tags": {"a"}}, "data")
    with pytest.raises(TypeError, match=r"^value\[0\] is a bytes"):
        json_encode([b"x"])


def test_deep_values_read_back_or_fail_as_not_json() -> None:
    assert json_decode(json_encode([[[[1.5]]]])) == [[[[1.5]]]]
    with pytest.raises(RecursionError):
        json_decode("[" * 100_000 + "]" * 100_000)


async def test_history_with_nan_is_refused_and_nothing_is_written(storage: Storage) -> None:
    await storage.agents.create(agent_record("agent-1", await owner_id(storage)))
    await storage.append_history("agent-1", HistoryRecord("note", 1, {"text": "first"}))
    with pytest.raises(ValueError, match=r"^History record data\.scores\[1\] is NaN"):
        await storage.append_history("agent-1", HistoryRecord("note", 2, {"text": "x", "scores": [1, math.nan]}))
    agent = await storage.agents.find_by_id("agent-1")
    assert agent is not None and agent.active_session_id is not None
    assert await storage.history.find_by_session_id(agent.active_session_id) == [
        HistoryRecord("note", 1, {"text": "first"})
    ]
    rows = await sql_rows(storage.db, "SELECT data FROM session_history")
    assert [row["data"] for row in rows] == ['{"text":"first"}']


async def test_a_float_is_stored_in_the_js_form(storage: Storage) -> None:
    await storage.agents.create(agent_record("agent-1", await owner_id(storage), stats={"cost": 2.0, "rate": 1e-7}))
    rows = await sql_rows(storage.db, "SELECT stats FROM agents WHERE id = 'agent-1'")
    assert rows[0]["stats"] == '{"cost":2,"rate":1e-7}'
