"""The exception hierarchy: one class per gRPC code, all MehrError, with .code and .message."""

from __future__ import annotations

import pickle

import pytest

import mehr
from mehr.errors import error_for


def test_every_code_but_ok_has_its_class():
    for code in mehr.StatusCode:
        if code is mehr.StatusCode.OK:
            continue
        error = error_for(int(code), "what failed")
        assert isinstance(error, mehr.MehrError)
        assert type(error).__name__.upper() == code.name.replace("_", ""), (code, type(error))
        assert error.code is code
        assert error.message == "what failed"
        assert str(error) == f"{code.name}: what failed"


def test_unknown_codes_stay_mehr_errors():
    error = error_for(99, "from the future")
    assert type(error) is mehr.MehrError
    assert error.code is mehr.StatusCode.UNKNOWN


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (mehr.InvalidArgument, ValueError),
        (mehr.NotFound, LookupError),
        (mehr.DeadlineExceeded, TimeoutError),
        (mehr.Unavailable, ConnectionError),
        (mehr.PermissionDenied, PermissionError),
        (mehr.Unauthenticated, PermissionError),
    ],
)
def test_some_codes_are_also_builtin_exceptions(cls, builtin):
    error = cls("x")
    assert isinstance(error, builtin)
    assert isinstance(error, mehr.MehrError)
    with pytest.raises(builtin):
        raise error


def test_errors_survive_pickling():
    error = mehr.NotFound("no function `f`")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is mehr.NotFound
    assert copy.message == error.message and copy.code is error.code
    generic = pickle.loads(pickle.dumps(mehr.MehrError("odd", 13)))
    assert generic.code is mehr.StatusCode.INTERNAL


def test_the_daemons_details_ride_along_and_survive_pickling():
    error = error_for(8, "busy", "FUNCTION_BUSY", "mehr.v1", {"function_id": "f"}, 1.0)
    assert type(error) is mehr.ResourceExhausted
    assert (error.reason, error.domain, error.metadata, error.retry_delay) == (
        "FUNCTION_BUSY",
        "mehr.v1",
        {"function_id": "f"},
        1.0,
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is mehr.ResourceExhausted
    assert (copy.reason, copy.metadata, copy.retry_delay) == ("FUNCTION_BUSY", {"function_id": "f"}, 1.0)
    plain = mehr.NotFound("x")
    assert plain.reason is None and plain.domain is None and plain.metadata == {}
