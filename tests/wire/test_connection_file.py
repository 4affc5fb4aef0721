"""Connection files: strict about what a client needs, lenient about the rest."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import write_connection_file as jupyter_write_connection_file

from sidecar import ConnectionFileError, SidecarError
from sidecar.wire import (
    ConnectionInfo,
    Session,
    Signer,
    read_connection_file,
    write_connection_file,
)

# Z85 text of a CurveZMQ keypair (any 40 Z85 characters will do for a file test).
CURVE_PUBLIC = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
CURVE_SECRET = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"


def _full() -> dict[str, Any]:
    return {
        "shell_port": 50001,
        "iopub_port": 50002,
        "stdin_port": 50003,
        "control_port": 50004,
        "hb_port": 50005,
        "ip": "127.0.0.1",
        "key": "c0ffee-key",
        "transport": "tcp",
        "signature_scheme": "hmac-sha256",
        "kernel_name": "python3",
    }


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_read_from_path_str_and_bytes(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "kernel.json", _full())
    expected = ConnectionInfo(
        shell_port=50001,
        iopub_port=50002,
        stdin_port=50003,
        control_port=50004,
        hb_port=50005,
        key="c0ffee-key",
        kernel_name="python3",
    )
    assert read_connection_file(path) == expected
    assert read_connection_file(str(path)) == expected
    assert read_connection_file(path.read_bytes()) == expected


def test_defaults_for_optional_fields() -> None:
    ports = {f"{c}_port": i for i, c in enumerate(["shell", "iopub", "stdin", "control", "hb"])}
    info = read_connection_file(json.dumps(ports).encode())
    assert info.ip == "127.0.0.1"
    assert info.transport == "tcp"
    assert info.key == ""
    assert info.signature_scheme == "hmac-sha256"
    assert info.curve_publickey is None
    assert info.extra == {}
    assert not Session.from_connection_info(info).signer.enabled


def test_write_is_owner_only(tmp_path: Path) -> None:
    info = read_connection_file(json.dumps(_full()).encode())
    path = write_connection_file(info, tmp_path / "kernel.json")
    assert path == tmp_path / "kernel.json"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600
    assert json.loads(path.read_text()) == _full()
    assert read_connection_file(path) == info


def test_write_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "kernel.json"
    path.write_text("do not touch")
    info = read_connection_file(json.dumps(_full()).encode())
    with pytest.raises(FileExistsError):
        write_connection_file(info, path)
    assert path.read_text() == "do not touch"


def test_extra_keys_are_kept_and_written_back(tmp_path: Path) -> None:
    data = _full() | {
        "jupyter_session": "/home/me/notebook.ipynb",
        "custom": {"nested": [1, 2, {"x": None}]},
        "kernel_protocol_version": "5.5",
    }
    info = read_connection_file(_write_json(tmp_path / "in.json", data))
    assert info.extra == {
        "jupyter_session": "/home/me/notebook.ipynb",
        "custom": {"nested": [1, 2, {"x": None}]},
        "kernel_protocol_version": "5.5",
    }
    assert info.to_dict() == data
    out = write_connection_file(info, tmp_path / "out.json")
    assert json.loads(out.read_text()) == data


@pytest.mark.parametrize(
    "field", ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]
)
def test_missing_field(tmp_path: Path, field: str) -> None:
    data = _full()
    del data[field]
    path = _write_json(tmp_path / "kernel.json", data)
    with pytest.raises(ConnectionFileError) as e:
        read_connection_file(path)
    assert field in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shell_port", "abc"),
        ("hb_port", "5"),
        ("iopub_port", None),
        ("control_port", 1.5),
        ("key", 1234),
        ("ip", ["127.0.0.1"]),
        ("transport", "udp"),
        ("signature_scheme", None),
        ("curve_publickey", 42),
    ],
)
def test_mistyped_field(tmp_path: Path, field: str, value: Any) -> None:
    path = _write_json(tmp_path / "kernel.json", _full() | {field: value})
    with pytest.raises(ConnectionFileError) as e:
        read_connection_file(path)
    assert field in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{",
        b'{"shell_port": 1,}',
        b"\xff\xfe{}",
        b'{"key": "\xff"}',
        b"[" * 100_000,
    ],
)
def test_not_json(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "kernel.json"
    path.write_bytes(data)
    with pytest.raises(ConnectionFileError, match="not valid JSON") as e:
        read_connection_file(path)
    assert str(path) in str(e.value)
    with pytest.raises(ConnectionFileError, match="not valid JSON"):
        read_connection_file(data)


@pytest.mark.parametrize("data", [b"[]", b"null", b'"kernel.json"', b"42"])
def test_not_an_object(data: bytes) -> None:
    with pytest.raises(ConnectionFileError, match="expected a JSON object"):
        read_connection_file(data)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "kernel-123.json"
    with pytest.raises(ConnectionFileError, match="cannot read") as e:
        read_connection_file(path)
    assert str(path) in str(e.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileError, match="cannot read"):
        read_connection_file(tmp_path)


def test_connection_file_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        read_connection_file(b"nope")
    assert issubclass(ConnectionFileError, SidecarError)


def test_endpoint_tcp() -> None:
    info = read_connection_file(json.dumps(_full() | {"ip": "10.1.2.3"}).encode())
    assert info.endpoint("shell") == "tcp://10.1.2.3:50001"
    assert info.endpoint("iopub") == "tcp://10.1.2.3:50002"
    assert info.endpoint("stdin") == "tcp://10.1.2.3:50003"
    assert info.endpoint("control") == "tcp://10.1.2.3:50004"
    assert info.endpoint("hb") == "tcp://10.1.2.3:50005"


def test_endpoint_ipc() -> None:
    info = read_connection_file(
        json.dumps(
            _full() | {"transport": "ipc", "ip": "/tmp/kernel-abc", "shell_port": 1}
        ).encode()
    )
    assert info.endpoint("shell") == "ipc:///tmp/kernel-abc-1"
    assert info.endpoint("hb") == "ipc:///tmp/kernel-abc-50005"


@pytest.mark.parametrize(("ip", "host"), [("::1", "[::1]"), ("fe80::1%eth0", "[fe80::1%eth0]")])
def test_endpoint_ipv6(ip: str, host: str) -> None:
    info = read_connection_file(json.dumps(_full() | {"ip": ip}).encode())
    assert info.endpoint("control") == f"tcp://{host}:50004"


@pytest.mark.parametrize("channel", ["heartbeat", "Shell", "", "extra"])
def test_endpoint_unknown_channel(channel: str) -> None:
    info = read_connection_file(json.dumps(_full()).encode())
    with pytest.raises(ValueError, match="unknown channel"):
        info.endpoint(channel)


def test_curve_keys_are_kept(tmp_path: Path) -> None:
    data = _full() | {"curve_publickey": CURVE_PUBLIC, "curve_secretkey": CURVE_SECRET}
    info = read_connection_file(json.dumps(data).encode())
    assert info.curve_publickey == CURVE_PUBLIC
    assert info.curve_secretkey == CURVE_SECRET
    assert info.extra == {}
    out = write_connection_file(info, tmp_path / "k.json")
    assert json.loads(out.read_text()) == data


def test_absent_curve_keys_are_not_written(tmp_path: Path) -> None:
    info = read_connection_file(json.dumps(_full()).encode())
    written = json.loads(write_connection_file(info, tmp_path / "k.json").read_text())
    assert "curve_publickey" not in written
    assert "curve_secretkey" not in written


def test_session_from_connection_info() -> None:
    info = read_connection_file(
        json.dumps(_full() | {"key": "k3y", "signature_scheme": "hmac-sha512"}).encode()
    )
    session = Session.from_connection_info(info, username="me")
    frames = session.serialize(session.message("kernel_info_request"))
    Signer(b"k3y", "hmac-sha512").verify(frames[2:6], bytes(frames[1]))
    assert session.username == "me"


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
@pytest.mark.parametrize("curve", [False, True])
def test_read_a_file_written_by_jupyter_client(tmp_path: Path, transport: str, curve: bool) -> None:
    ip = "127.0.0.1" if transport == "tcp" else str(tmp_path / "ipc-kernel")
    curve_keys: dict[str, Any] = (
        {"curve_publickey": CURVE_PUBLIC.encode(), "curve_secretkey": CURVE_SECRET.encode()}
        if curve
        else {}
    )
    fname, cfg = jupyter_write_connection_file(
        fname=str(tmp_path / "kernel-jc.json"),
        shell_port=41001,
        iopub_port=41002,
        stdin_port=41003,
        control_port=41004,
        hb_port=41005,
        ip=ip,
        key=b"0123-abcd",
        transport=transport,
        signature_scheme="hmac-sha256",
        kernel_name="python3",
        **curve_keys,
    )
    info = read_connection_file(fname)
    assert info.shell_port == 41001
    assert info.hb_port == 41005
    assert info.ip == ip
    assert info.transport == transport
    assert info.key == "0123-abcd"
    assert info.kernel_name == "python3"
    assert info.curve_publickey == (CURVE_PUBLIC if curve else None)
    assert info.curve_secretkey == (CURVE_SECRET if curve else None)
    assert info.extra == {}
    assert info.to_dict() == cfg

    # jupyter_client computes the same endpoints and signs the same way.
    client = BlockingKernelClient()
    client.load_connection_file(fname)
    for channel in ("shell", "iopub", "stdin", "control", "hb"):
        assert info.endpoint(channel) == client._make_url(channel)
    ours = Session.from_connection_info(info)
    frames = ours.serialize(ours.message("kernel_info_request"))
    assert client.session.sign(frames[2:6]) == frames[1]


def test_jupyter_client_reads_a_file_we_wrote(tmp_path: Path) -> None:
    data = _full() | {"key": "sekrit", "ip": "127.0.0.2", "extra_thing": [1]}
    info = read_connection_file(json.dumps(data).encode())
    path = write_connection_file(info, tmp_path / "ours.json")
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    assert client.shell_port == 50001
    assert client.ip == "127.0.0.2"
    assert client.session.key == b"sekrit"
    assert client._make_url("shell") == info.endpoint("shell")


ports = st.integers(min_value=1, max_value=65535)


@settings(max_examples=100)
@given(
    shell=ports,
    iopub=ports,
    key=st.text(max_size=40),
    ip=st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "/tmp/k"]),
    transport=st.sampled_from(["tcp", "ipc"]),
    extra=st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in _full() and not k.startswith("curve_")),
        st.none() | st.integers() | st.text(max_size=10) | st.lists(st.booleans(), max_size=3),
        max_size=3,
    ),
)
def test_write_read_roundtrip(
    tmp_path_factory: pytest.TempPathFactory,
    shell: int,
    iopub: int,
    key: str,
    ip: str,
    transport: Any,
    extra: dict[str, Any],
) -> None:
    info = ConnectionInfo(
        shell_port=shell,
        iopub_port=iopub,
        stdin_port=3,
        control_port=4,
        hb_port=5,
        ip=ip,
        transport=transport,
        key=key,
        extra=extra,
    )
    path = write_connection_file(info, tmp_path_factory.mktemp("rt") / "kernel.json")
    assert read_connection_file(path) == info
    assert read_connection_file(path.read_bytes()) == info
