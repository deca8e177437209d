"""Path normalization (Istio's hardened rules): the spelling of a path cannot bypass policy."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import normalize
from proxy.normalize import BadPath, normalize_target


@pytest.mark.parametrize(
    ("raw", "path", "query"),
    [
        ("/items/1", "/items/1", ""),
        ("/items/1?x=%2F&y", "/items/1", "x=%2F&y"),
        ("//admin", "/admin", ""),
        ("/items/%2e%2e/admin", "/admin", ""),
        ("/items/..%2Fadmin", "/admin", ""),
        ("/items%2Fadmin", "/items/admin", ""),
        ("/items%5cadmin", "/items/admin", ""),
        ("/items\\admin", "/items/admin", ""),
        ("/a/./b/../c/", "/a/c/", ""),
        ("/a/b/..", "/a/", ""),
        ("/..", "/", ""),
        ("/%41%7e", "/A~", ""),
        ("/a%20b%3f", "/a%20b%3F", ""),
        ("/%252F", "/%252F", ""),  # decoded once only: %25 stays an escape
        ("/a/...;x/b", "/a/...;x/b", ""),  # `...` is a name, not a dot segment
    ],
)
def test_normalized_paths(raw: str, path: str, query: str) -> None:
    target = normalize_target(raw)
    assert (target.path, target.query) == (path, query)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("/a%00b", normalize.NUL),
        ("/a?b=%00", normalize.NUL),
        ("/a%zz", normalize.INVALID_ESCAPE),
        ("/a%2", normalize.INVALID_ESCAPE),
        ("/a b", normalize.INVALID_CHARACTER),
        ("/a\x7f", normalize.INVALID_CHARACTER),
        ("/caf\u00e9", normalize.INVALID_CHARACTER),
        ("/a#frag", normalize.INVALID_CHARACTER),
        ("http://x/a", normalize.NOT_ORIGIN_FORM),
        ("*", normalize.NOT_ORIGIN_FORM),
        # a servlet container reads `..;x` as `..`: /public/..;/admin would be its /admin
        ("/public/..;/admin", normalize.DOT_SEGMENT_PARAMETER),
        ("/public/%2e%2e;jsessionid=1/admin", normalize.DOT_SEGMENT_PARAMETER),
        ("/public/.;/admin", normalize.DOT_SEGMENT_PARAMETER),
    ],
)
def test_rejected_targets_have_stable_reasons(raw: str, reason: str) -> None:
    with pytest.raises(BadPath) as caught:
        normalize_target(raw)
    assert caught.value.reason == reason


pieces = st.lists(
    st.sampled_from(["a", "admin", ".", "..", "", "%2F", "%2e", "%5C", "\\", "%41", "%25", "~"]),
    max_size=8,
)


@given(pieces)
def test_normalization_is_idempotent_and_clean(parts: list[str]) -> None:
    target = normalize_target("/" + "/".join(parts))
    assert normalize_target(target.path).path == target.path
    segments = target.path.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "//" not in target.path and "\\" not in target.path


def test_a_target_seen_again_gets_the_same_answer_and_the_kept_ones_stay_bounded() -> None:
    first = normalize_target("/x/../items/7?q=1")
    again = normalize_target("/x/../items/7?q=1")
    assert (again.path, again.query, again.text) == ("/items/7", "q=1", "/items/7?q=1")
    assert again is first  # kept: normalized once
    for _ in range(2):  # a refused target is refused each time, never kept
        with pytest.raises(BadPath):
            normalize_target("/a%00b")
    long_target = "/" + "a" * 300
    assert normalize_target(long_target) is not normalize_target(long_target)
    for n in range(normalize._KEPT + 10):
        normalize_target(f"/many/{n}")
    assert len(normalize._normalized) <= normalize._KEPT
