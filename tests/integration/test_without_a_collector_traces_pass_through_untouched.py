"""With no `[tracing]` collector the proxies make no spans: a sampled `traceparent` reaches
the app as its caller sent it, so the app's spans hang under its caller's, not under a
proxy span that no collector will ever hold."""

from pathlib import Path

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.integration.test_sampled_traces_get_a_span_at_each_proxy import PARENT, TRACE, _get
from tests.support import require_tool


def test_a_sampled_traceparent_reaches_the_app_untouched_when_no_span_is_exported(
        tmp_path: Path) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        sent = f"00-{TRACE}-{PARENT}-01"
        answer = _get(curl, f"http://{front.outbound}/items/7", sent)
        assert answer["name"] == "web"
        assert answer["traceparent"] == sent
    finally:
        mesh.stop()
        backend.stop()
