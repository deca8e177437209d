"""Under systemd, `vmesh run` makes two transient units ordered so a stop drains the proxy first."""

from vm_mesh.host.launcher import transient_units


def properties(argv: list[str]) -> dict[str, str]:
    found = {}
    for arg in argv[: argv.index("--")]:
        if arg.startswith("--property="):
            key, _, value = arg.removeprefix("--property=").partition("=")
            found[key] = value
    return found


def test_app_unit_starts_first_and_the_proxy_is_bound_after_it() -> None:
    app, proxy = transient_units("shop", ["./server", "--port", "8080"], drain_s=30)
    assert "--unit=vmesh-app-shop" in app and app[app.index("--") + 1:] == [
        "./server", "--port", "8080"]
    assert "--unit=vmesh-proxy-shop" in proxy
    assert proxy[-3:] == ["proxy", "run", "shop"]
    proxy_props = properties(proxy)
    # After= the app: on stop, systemd stops the proxy (drain) before the app
    assert proxy_props["After"] == proxy_props["BindsTo"] == "vmesh-app-shop.service"
    assert proxy_props["TimeoutStopSec"] == "40s"  # 30 s drain + margin
    assert proxy_props["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for unit in (app, proxy):
        assert properties(unit)["Restart"] == "on-failure"
