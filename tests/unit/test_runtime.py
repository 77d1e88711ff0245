"""Small kernel runtime helpers."""

from shared.runtime import _without_password


def test_a_nats_url_in_a_message_never_shows_its_password():
    assert _without_password("nats://svc:s3cr3t@host:4222,nats://u:p@h2:4222") == \
        "nats://svc:***@host:4222,nats://u:***@h2:4222"
    assert _without_password("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
