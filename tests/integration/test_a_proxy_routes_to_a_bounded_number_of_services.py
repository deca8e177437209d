"""A proxy routes to at most `max_destinations` services at once: an app that makes up a new
Host for every request gets 503 `too_many_destinations` for the names beyond the limit (the
log says so once), instead of a discovery watch and compiled policy for each name, and the
services the proxy already routes to go on working."""

from pathlib import Path

import httpx

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend


def test_names_beyond_max_destinations_are_refused_and_known_ones_still_work(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    api = start_backend("api")
    try:
        mesh.start_proxy("api", api.port)
        front = mesh.start_proxy("front", 1, extra="max_destinations = 3")
        with httpx.Client(base_url=f"http://{front.outbound}", timeout=10) as client:

            def get(service: str) -> httpx.Response:
                return client.get("/hello", headers={"host": service})

            assert get("api").status_code == 200
            made_up = [get(f"made-up-{n}") for n in range(4)]
            assert [(r.status_code, r.headers["vmesh-error"]) for r in made_up] == (
                [(503, "no_endpoints")] * 2 + [(503, "too_many_destinations")] * 2)
            assert "routes to 3 services already (max_destinations)" in made_up[-1].text
            assert get("api").status_code == 200
            assert get("made-up-1").headers["vmesh-error"] == "no_endpoints"

        full = [r for r in front.logs if r.get("event") == "destinations_full"]
        assert [(r["dst_service"], r["max_destinations"]) for r in full] == [("made-up-2", 3)]
        with front.admin() as admin:
            watched = {u["service"] for u in admin.get("/v1/endpoints").json()["upstreams"]}
        assert watched == {"api", "made-up-0", "made-up-1"}
    finally:
        mesh.stop()
        api.stop()
