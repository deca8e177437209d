"""An app may close an idle keep-alive connection just as the inbound proxy sends a request
on it (its keep-alive timeout fires then). The proxy sends an idempotent request again on a
new connection, so the caller never sees it; a POST it must not repeat gets a 502."""

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401


def test_a_get_is_sent_again_and_a_post_is_not(policy_mesh: PolicyMesh) -> None:
    app, proxy = policy_mesh.service("closing")
    front = policy_mesh.mesh.start_proxy("front", 1)
    with policy_mesh.client(front) as client:
        first = client.get("/first", headers={"Host": "closing"})
        policy_mesh.control(app, drop_reused=True)
        again = client.get("/again", headers={"Host": "closing"})
        post = client.post("/post", headers={"Host": "closing"}, content=b"order=1")

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["path"] == "/again"
    assert (post.status_code, post.headers["vmesh-error"]) == (502, "upstream.reset")
    stats = policy_mesh.stats(app)
    # /again was dropped once and answered on a new connection; the POST reached the app once
    assert (stats["by_path"], stats["dropped"]) == ({"/first": 1, "/again": 1}, 2)
    # counted where the operator sees it: once, the GET (the POST went nowhere again)
    assert proxy.metric("request_resend_total", direction="inbound",
                        reason="app.reset") == 1


def test_a_post_with_an_idempotency_key_is_sent_again(policy_mesh: PolicyMesh) -> None:
    """The inbound proxy decides as the outbound one does (`Idempotency-Key`): the app
    executes such a request once per key, so repeating it is safe."""
    app, _ = policy_mesh.service("closing")
    front = policy_mesh.mesh.start_proxy("front", 1)
    with policy_mesh.client(front) as client:
        first = client.get("/first", headers={"Host": "closing"})
        policy_mesh.control(app, drop_reused=True)
        keyed = client.post("/orders/7/confirm",
                            headers={"Host": "closing", "Idempotency-Key": "order-7"})

    assert (first.status_code, keyed.status_code) == (200, 200)
    assert keyed.json()["path"] == "/orders/7/confirm"
    stats = policy_mesh.stats(app)
    # dropped once on the kept-alive connection, then answered once on a new one
    assert (stats["by_path"], stats["dropped"]) == ({"/first": 1, "/orders/7/confirm": 1}, 1)
