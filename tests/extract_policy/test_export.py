import errno
import importlib.util
import json
import os
from contextlib import contextmanager

import numpy as np
import pytest
from support import toward_the_ball

from insight_cli.errors import InsightError
from insight_cli.extract_policy import export
from insight_cli.extract_policy.export import NAMES, policy_document, read_policy, write_exports
from insight_cli.extract_policy.symbolic import Interface, extract, variables_for

OBJECTS, ACTIONS = ["ball", "paddle"], ["NOOP", "RIGHT", "LEFT"]


def exported(directory, run="run.ckpt", objects=OBJECTS, actions=ACTIONS, noise=0.0):
    """A move-toward-the-ball policy's files in `directory`, extracted from `run`."""
    interface = Interface(variables_for(objects), actions)
    policy = extract(toward_the_ball(objects, noise), interface, threshold=0.01, digits=3)
    document = policy_document(policy, "Catch", {}, objects, {"run": str(run), "fidelity": {}, "returns": {}})
    write_exports(directory, policy, document)
    return policy


def import_file(path):
    spec = importlib.util.spec_from_file_location("exported", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INJECTIONS = [
    'a""" if __import__("pathlib").Path("pwned").touch() else """b',
    "a''' + __import__('pathlib').Path('pwned').touch() + '''b",
    'new\nline"""\n__import__(\'pathlib\').Path(\'pwned\').touch()\n"""',
    r"back\N{x}slash\x\u\\",
    os.fsdecode(b"caf\xe9-not-utf8"),
]


@pytest.mark.parametrize("directory", INJECTIONS)
def test_a_run_path_cannot_put_code_into_policy_py(tmp_path, monkeypatch, directory):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / directory / "run.ckpt"
    policy = exported(tmp_path, run)
    module = import_file(tmp_path / "policy.py")
    assert not (tmp_path / "pwned").exists()
    assert str(run) in module.__doc__  # the docstring still reads as the path
    coordinates = np.random.default_rng(0).random((6, 2, 4, 2))
    np.testing.assert_allclose(module.logits(coordinates), policy.logits(coordinates), rtol=1e-9)
    assert read_policy(tmp_path / "policy.json")[1]["run"] == str(run)


def test_an_action_name_cannot_put_code_into_policy_py(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exported(tmp_path, actions=["NOOP", "RIGHT\n__import__('pathlib').Path('pwned').touch()", "LEFT"])
    assert import_file(tmp_path / "policy.py").ACTIONS[1].startswith("RIGHT\n")
    assert not (tmp_path / "pwned").exists()


def test_names_python_would_fold_together_are_refused(tmp_path):
    with pytest.raises(InsightError, match="'x_ﬁsh_1' cannot be a name in policy.py"):
        exported(tmp_path, objects=["ball", "paddle", "ﬁsh", "fish"])
    assert not any(tmp_path.iterdir())


def full_disk_for(name):
    """atomic_output whose stream for `name` fails as a full disk does."""
    real = export.atomic_output

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    @contextmanager
    def output(path):
        with real(path) as stream:
            yield FullDisk() if path.name == name else stream

    return output


@pytest.mark.parametrize("failing", NAMES)
def test_a_failed_write_leaves_the_earlier_set_of_files_whole(tmp_path, monkeypatch, failing):
    exported(tmp_path, "first.ckpt")
    before = {name: (tmp_path / name).read_bytes() for name in NAMES}
    monkeypatch.setattr(export, "atomic_output", full_disk_for(failing))
    with pytest.raises(InsightError, match="disk full"):
        exported(tmp_path, "second.ckpt", noise=0.005)
    assert {name: (tmp_path / name).read_bytes() for name in NAMES} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)  # no temporaries left


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda d: d["actions"][1]["terms"][0]["powers"].update(x_bat_4=1), "KeyError: 'x_bat_4'"),
        (lambda d: d["actions"][1]["terms"][0].update(coefficient="nan"), "not finite"),
        (lambda d: d["actions"][1]["terms"][0]["powers"].update(x_ball_4=0.5), "not a positive whole number"),
        (lambda d: d.pop("variables"), "KeyError: 'variables'"),
        (lambda d: d["variables"].reverse(), "do not follow from its objects"),
    ],
)
def test_a_damaged_policy_json_is_a_one_line_error(tmp_path, damage, message):
    exported(tmp_path)
    document = json.loads((tmp_path / "policy.json").read_text())
    damage(document)
    (tmp_path / "policy.json").write_text(json.dumps(document))
    with pytest.raises(InsightError, match=f"damaged policy file.*{message}"):
        read_policy(tmp_path / "policy.json")
