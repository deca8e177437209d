"""An app's interim responses (103 Early Hints) cross both proxies to an HTTP/1.1 caller ahead
of the final response, hop by hop (RFC 9110 15.2); an HTTP/1.0 caller gets the final response
alone, and a 101 the app sends unasked is a 502, never relayed."""

from collections.abc import Iterator

import pytest

from tests.integration.raw_mesh import RawMesh, answered_with, raw_mesh

HINTED = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n"
          b"Keep-Alive: timeout=5\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n"
          b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawMesh]:
    with raw_mesh(tmp_path_factory.mktemp("mesh")) as mesh:
        yield mesh


def _in_http10(request: bytes) -> bytes:
    return request.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)


def _hint_then_answer(answer: bytes) -> None:
    hint, _, final = answer.partition(b"\r\n\r\n")
    lines = hint.lower().split(b"\r\n")
    assert lines[0] == b"http/1.1 103 early hints", answer
    assert b"link: </style.css>; rel=preload" in lines
    # hop-by-hop, and named by Connection: this hop's, not the caller's
    assert not [line for line in lines[1:] if line.split(b":")[0] in (b"keep-alive", b"x-hop",
                                                                        b"connection")]
    assert final.startswith(b"HTTP/1.1 200 OK\r\n") and final.endswith(b"\r\n\r\nok"), answer


def test_an_app_s_103_reaches_a_local_caller_through_both_proxies(mesh: RawMesh) -> None:
    _hint_then_answer(mesh.from_app(answered_with(HINTED)))


def test_an_app_s_103_reaches_a_peer_proxy(mesh: RawMesh) -> None:
    _hint_then_answer(mesh.from_peer(answered_with(HINTED)))


def test_an_http10_caller_gets_only_the_final_response(mesh: RawMesh) -> None:
    for answer in (mesh.from_app(_in_http10(answered_with(HINTED))),
                   mesh.from_peer(_in_http10(answered_with(HINTED)))):
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"ok"), answer
        assert b" 103 " not in answer and b"style.css" not in answer


def test_a_101_the_app_sends_unasked_is_a_502(mesh: RawMesh) -> None:
    answer = mesh.from_app(answered_with(b"HTTP/1.1 101 Switching Protocols\r\n"
                                         b"Connection: upgrade\r\nUpgrade: x\r\n\r\nraw bytes"))
    assert answer.startswith(b"HTTP/1.1 502 "), answer
    assert b" 101 " not in answer and b"raw bytes" not in answer
