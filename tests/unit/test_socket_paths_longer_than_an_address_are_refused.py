"""A unix socket's path is checked against what a socket address holds (107 bytes and the
NUL) before a bind, so that a deep VMESH_ROOT fails with the path and a remedy."""

from pathlib import Path

import pytest

from vm_mesh.errors import UserError
from vm_mesh.paths import check_socket_path


def test_a_path_of_107_bytes_fits_and_one_of_108_is_refused_with_its_length() -> None:
    fits = Path("/" + "a" * 99 + "/x.sock")
    assert len(str(fits)) == 107
    assert check_socket_path(fits) == fits
    longer = Path("/" + "a" * 100 + "/x.sock")
    with pytest.raises(UserError) as refused:
        check_socket_path(longer, "pass a shorter --dir")
    assert str(refused.value) == (f"{longer}: a unix socket's path holds at most 107 bytes, "
                                  "this one has 108; pass a shorter --dir")


def test_the_length_counts_bytes_not_characters() -> None:
    path = Path("/" + "é" * 50 + "/x.sock")  # 58 characters, 108 bytes in UTF-8
    with pytest.raises(UserError, match="this one has 108;"):
        check_socket_path(path)
