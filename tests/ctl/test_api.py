"""The call table (``axonfs.api``) against everything that must agree with it.

Each front end's copy of a call -- the function answering it, the client's
method, the Telepath table, the CLI subcommand, the protocol document -- is
checked here, so a signature or a name that drifts fails a test instead of
failing a user.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from axonfs import api
from axonfs.axon import Axon
from axonfs.cli import build_parser
from axonfs.client import AxonClient
from axonfs.ctlserver import SERVER_CALLS, _Connection
from axonfs.telepath.service import AxonApi, CellIdentity, Kind

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def answering(call: api.Call) -> Callable[..., Any]:
    owner: type = Axon if call.owner is api.Owner.AXON else _Connection
    method: Callable[..., Any] = getattr(
        owner, call.name if owner is Axon else SERVER_CALLS[call.name]
    )
    return method


def served_parameters(call: api.Call) -> list[inspect.Parameter]:
    """What a socket client may pass: the answering function's parameters without
    ``self``, the request's id, or the in-process ones."""
    parameters = list(inspect.signature(answering(call)).parameters.values())[1:]
    if call.request_id:
        parameters = parameters[1:]
    return [p for p in parameters if p.name not in call.local]


def client_parameters(call: api.Call) -> list[inspect.Parameter]:
    return list(inspect.signature(getattr(AxonClient, call.name)).parameters.values())[1:]


@pytest.mark.parametrize("call", api.CALLS.values(), ids=lambda call: call.name)
def test_the_client_takes_what_the_server_takes(call: api.Call) -> None:
    served, client = served_parameters(call), client_parameters(call)
    assert [(p.name, p.kind, p.default, p.annotation) for p in client] == [
        (p.name, p.kind, p.default, p.annotation) for p in served
    ]


@pytest.mark.parametrize("call", api.CALLS.values(), ids=lambda call: call.name)
def test_the_answering_function_has_the_declared_shape(call: api.Call) -> None:
    function = answering(call)
    if call.shape is api.Shape.STREAM and not call.request_id:
        returns = inspect.signature(function).return_annotation
        assert inspect.isasyncgenfunction(function) or returns.startswith("AsyncIterator[")
    else:
        assert inspect.iscoroutinefunction(function)
    if call.batched is not None:
        twin = getattr(Axon, call.batched)
        assert inspect.isasyncgenfunction(twin)
        assert list(inspect.signature(twin).parameters) == list(
            inspect.signature(function).parameters
        )


def test_telepath_serves_every_declared_call(tmp_path: Path) -> None:
    table = AxonApi(Axon.__new__(Axon), CellIdentity.load(tmp_path)).methods()
    declared = {call.name: call for call in api.CALLS.values() if call.telepath}
    cell_calls = {name for name in table if name.startswith("getCell") or name == "getHealthCheck"}
    assert set(table) - cell_calls == set(declared)
    for name, call in declared.items():
        expected = {
            api.Shape.VALUE: Kind.VALUE,
            api.Shape.STREAM: Kind.GENERATOR,
            api.Shape.UPLOAD: Kind.SHARE,
        }[call.shape]
        assert table[name].kind is expected, name


def test_each_cli_subcommand_named_exists() -> None:
    parser = build_parser()
    ctl = _subcommands(parser)["ctl"]
    names = set(_subcommands(ctl))
    missing = {call.cli for call in api.CALLS.values() if call.cli} - names
    assert not missing


def test_the_protocol_document_describes_every_call() -> None:
    text = PROTOCOL.read_text()
    missing = [name for name in api.CALLS if not re.search(rf"\b{name}\b", text)]
    assert not missing


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@pytest.mark.parametrize(
    "call", [c for c in api.CALLS.values() if c.local], ids=lambda call: call.name
)
def test_in_process_parameters_are_keyword_only(call: api.Call) -> None:
    parameters = inspect.signature(answering(call)).parameters
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in call.local)


def test_the_quick_argument_check_agrees_with_signature_bind(tmp_path: Path) -> None:
    """Every Telepath method, every count of positional arguments from none to
    twelve, with and without a keyword: ``Method.binds`` refuses exactly what
    ``Signature.bind`` refuses."""
    table = AxonApi(Axon.__new__(Axon), CellIdentity.load(tmp_path)).methods()
    for name, method in table.items():
        for count in range(13):
            for kwargs in ({}, {"offs": 0}, {"nonesuch": 1}):
                args = (None,) * count
                try:
                    method.signature.bind(*args, **kwargs)
                    expected = None
                except TypeError:
                    expected = TypeError
                try:
                    method.binds(args, kwargs)
                    got = None
                except TypeError:
                    got = TypeError
                assert got is expected, (name, count, kwargs)
