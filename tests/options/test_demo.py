"""Each `demo` option reaches `run_demo` (a check fails when an option is parsed and then dropped); the run itself
(NEON data, tune, video) is too long for the suite and is measured in the README."""

import pytest


@pytest.fixture
def calls(monkeypatch):
    import lighthead_edge.demo

    seen = []
    monkeypatch.setattr(lighthead_edge.demo, "run_demo", lambda out, **kw: seen.append({"out": out, **kw}))
    return seen


def test_defaults(cli, calls, tmp_path):
    code, _, err = cli("demo", "--out", tmp_path / "d")
    assert code == 0, err
    assert calls == [{"out": str(tmp_path / "d"), "model": None, "fine_tune": False, "minutes": 6.0, "threads": None}]


@pytest.mark.parametrize(
    ("args", "key", "value"),
    [(["--model", "m.pt"], "model", "m.pt"), (["--fine-tune"], "fine_tune", True),
     (["--minutes", "2.5"], "minutes", 2.5), (["--threads", "1"], "threads", 1)],
)  # fmt: skip
def test_each_option_reaches_run_demo(cli, calls, tmp_path, args, key, value):
    code, _, err = cli("demo", "--out", tmp_path / "d", *args)
    assert code == 0, err
    assert calls[0][key] == value
