"""TXT records from the LAN are untrusted bytes: a record whose vmesh keys are not UTF-8 or out of
range is rejected with a reason (never an exception out of the resolver), keys of others are
ignored, and a good record reads back as the instance it announces."""

import pytest

from vm_mesh.discovery.base import Instance
from vm_mesh.discovery.mdns import instance_from_txt, txt_record


def encoded(record: dict[str, str]) -> dict[bytes, bytes | None]:
    return {k.encode(): v.encode() for k, v in record.items()}


GOOD = encoded(txt_record(Instance("api", "api-1", "127.0.0.1", 4143, admin_port=4191,
                                   zone="a", weight=50, version="1.2"), "vmesh.local"))


def test_a_record_of_ours_reads_back_as_its_instance() -> None:
    assert instance_from_txt(GOOD, "127.0.0.1", 4143) == Instance(
        "api", "api-1", "127.0.0.1", 4143, admin_port=4191, zone="a", weight=50, version="1.2")


def test_keys_of_others_do_not_matter_even_when_not_utf8() -> None:
    record = {**GOOD, b"\xff\xfe": b"x", b"note": b"\xc3\x28", b"flag": None}
    assert instance_from_txt(record, "127.0.0.1", 4143) == instance_from_txt(GOOD, "127.0.0.1",
                                                                             4143)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"svc", b"\xff", "svc is not UTF-8"),
        (b"zone", b"\xc3\x28", "zone is not UTF-8"),
        (b"svc", b"", "no svc"),
        (b"id", None, "no id"),
        (b"weight", b"-5", "weight '-5' is not a number"),
        (b"weight", b"20000", "weight 20000 is not between 0 and 10000"),
        (b"weight", b"1e9", "weight '1e9' is not a number"),
        (b"admin", b"70000", "admin 70000 is not a port"),
        (b"admin", b"0", "admin 0 is not a port"),
    ],
)
def test_a_bad_record_is_rejected_with_a_reason(key: bytes, value: bytes | None,
                                                reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        instance_from_txt({**GOOD, key: value}, "127.0.0.1", 4143)
