"""An absolute-form target that carries userinfo (`http://user:pw@web/`) is refused with 400
`http1.userinfo_in_target` (RFC 9110 4.2.4: it can disguise the host a request is for), and
the refusal does not repeat the credentials."""

import pytest

from proxy.http1 import Http1Error, RequestReader


@pytest.mark.parametrize("target", [
    b"http://user:s3cret@web/",
    b"http://user@web.mesh:80/x",
    b"HTTPS://:s3cret@web/",
    b"http://web.mesh@evil/",
    b"http://@web/",
    b"http://a@b@web/",
    b"http://us[er@web/",
    b"http://user@/x",
])
def test_a_target_with_userinfo_is_refused(target: bytes) -> None:
    with pytest.raises(Http1Error) as caught:
        RequestReader().feed(b"GET " + target + b" HTTP/1.1\r\nHost: web\r\n\r\n")
    assert (caught.value.status, caught.value.reason) == (400, "http1.userinfo_in_target")
    assert "s3cret" not in str(caught.value)


def test_an_at_sign_after_the_authority_is_no_userinfo() -> None:
    reader = RequestReader()
    reader.feed(b"GET http://web/mail/a@b?to=c@d HTTP/1.1\r\nHost: web\r\n\r\n")
    assert reader.next_event() is not None
