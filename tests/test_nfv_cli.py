"""`tenantnet function ...` and `tenantnet chain ...` against a real API server (a core
without switches, as in test_chains.py); the lab path is in tests/test_nfv_restart.py."""

import json

import pytest

from tenantnet.cli.main import main

from test_chains import api  # noqa: F401 -- the fixture


def run(capsys, url, *argv, token="acme-secret"):
    code = main([*argv, "--api", url, "--token", token])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_function_and_chain_commands(api, capsys):  # noqa: F811
    core, url = api
    code, out, _ = run(capsys, url, "function", "add", "fw2", "--network", "acme/web",
                       "--node", "compute3", "--kind", "firewall", "--rules", "7",
                       "--stateless")
    assert code == 0 and out.startswith("fw2: firewall (rules 7, stateful False) on acme/web "
                                        "at compute3")
    assert core.topo.function("fw2").options == (("rules", 7), ("stateful", False))
    code, out, _ = run(capsys, url, "chain", "add", "c2", "--network", "acme/web", "--from",
                       "web3", "--to", "any", "--through", "fw2,fw1", "--on-failure", "closed")
    assert code == 0 and "c2: acme/web web3 -> any through fw2, fw1 (on failure: closed)" in out
    assert core.topo.chain("c2").through == ("fw2", "fw1")
    code, out, _ = run(capsys, url, "chain", "list", "--json")
    assert [c["name"] for c in json.loads(out)] == ["c1", "c2"]
    code, out, _ = run(capsys, url, "function", "list")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert set(lines) == {"fw1", "fw2", "sh1"}            # acme's own only
    assert "rules 7, stateful False (api)" in lines["fw2"]
    code, out, _ = run(capsys, url, "function", "del", "fw2")
    assert code == 0 and "fw2: removed from compute3 (acme/web); chains that named it now " \
                         "do without it: c2" in out
    code, out, _ = run(capsys, url, "chain", "del", "c2")
    assert code == 0 and "c2: removed; web3 -> any on acme/web is forwarded directly" in out
    assert core.topo.chain("c2") is None and core.topo.function("fw2") is None


@pytest.mark.parametrize("argv,words", [
    (["function", "add", "f", "--network", "acme/web", "--node", "compute1", "--kind",
      "shaper", "--rate", "fast"], "rate: 'fast' is not a tc rate"),
    (["function", "add", "f", "--network", "acme/web", "--node", "compute1", "--kind",
      "forward", "--rules", "3"], "rules: unknown key"),
    (["function", "add", "f", "--network", "globex/app", "--node", "compute1", "--kind",
      "forward"], "globex/app"),
    (["chain", "add", "x", "--network", "acme/web", "--from", "web1", "--to", "web2",
      "--through", "fw1,nope"], "through[1]: 'nope' is not a network function of acme/web"),
    (["chain", "add", "x", "--network", "acme/web", "--from", "web1", "--to", "web2",
      "--through", "fw1,"], "--through fw1,: an empty function name"),
    (["chain", "del", "nope"], "unknown chain 'nope'"),
    (["function", "del", "nope"], "unknown network function 'nope'"),
])
def test_bad_requests_are_one_clear_line(api, capsys, argv, words):  # noqa: F811
    core, url = api
    code, out, err = run(capsys, url, *argv)
    assert code == 1 and err.startswith("tenantnet: ") and words in err, err
    assert len(err.strip().splitlines()) == 1
    assert core.topo.function("f") is None and core.topo.chain("x") is None
