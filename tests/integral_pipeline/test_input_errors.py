"""Invalid input through the command line: one clear line per problem naming the file (and line), exit 2, no traceback.

Malformed parameter files, and a ``src_name`` whose known position is far from non-zero RA/DEC.
"""

from __future__ import annotations

import pytest

from integral_pipeline import cli

from ..conftest import REPO
from .test_cli import run_all

BAD_FILES = {
    # name: (bytes, what the one line says after the file's name)
    "latin1": (b"workflow: long_term\nparameters:\n  src_name: G\xe9minga\n", ": not UTF-8 text (byte 0xe9 on line 3)"),
    "utf16": ("workflow: long_term\n".encode("utf-16"), ": not UTF-8 text (byte 0xff on line 1)"),
    "syntax": (
        b"workflow: long_term\nparameters:\n  src_name: [Crab\n  T1: x\n",
        ", line 4, column 5: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence that "
        "starts on line 3)",
    ),
    "tabs": (b"workflow: long_term\nparameters:\n\tsrc_name: Crab\n", ", line 3, column 1: not valid YAML: found"),
    "twice": (b"workflow: long_term\nworkflow: revolution\n", ", line 2, column 1: not valid YAML: key 'workflow'"),
    "control": (b"workflow: long_term\nparameters:\n  src_name: a\x00b\n", ", line 3: not valid YAML: the control"),
    "list": (b"- workflow\n- long_term\n", ": must be a mapping of names to values, got a list"),
    "scalar": (b"long_term\n", ": must be a mapping of names to values, got a str"),
    "parameters_list": (b"workflow: long_term\nparameters: [1, 2]\n", ": 'parameters:' must be a mapping"),
    "surrogate": (
        b'workflow: long_term\nparameters:\n  src_name: "\\ud800"\n',
        ", run 1/1: src_name = '\\ud800' is not allowed: must be Unicode text",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_malformed_parameter_file_is_one_line_and_exit_2(name, tmp_path, capsys):
    content, said = BAD_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    status = cli.main([str(path), "--output-root", str(tmp_path / "out")], project_root=REPO)
    captured = capsys.readouterr()
    assert status == cli.EXIT_INVALID == 2
    lines = captured.err.strip().splitlines()
    assert lines[0] == "run_all.py: nothing executed:"
    assert len(lines) == 2, captured.err
    assert lines[1].startswith(f"{name}.yaml{said}"), lines[1]
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


def test_run_all_reports_every_malformed_file_at_once_without_a_traceback(tmp_path):
    for name in ("latin1", "syntax", "list"):
        (tmp_path / f"{name}.yaml").write_bytes(BAD_FILES[name][0])
    completed = run_all("latin1.yaml", "syntax.yaml", "list.yaml", "--output-root", "out", cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    problems = [line for line in completed.stderr.splitlines() if line.startswith("- ")]
    assert [line.split(":")[0].split(",")[0] for line in problems] == ["- latin1.yaml", "- syntax.yaml", "- list.yaml"]
    assert "line 4, column 5" in completed.stderr and "byte 0xe9 on line 3" in completed.stderr
    assert not (tmp_path / "out").exists()


def test_the_listing_shows_a_malformed_file_on_one_line(tmp_path, capsys):
    project = tmp_path / "project"
    (project / "parameters").mkdir(parents=True)
    (project / "notebooks").symlink_to(REPO / "notebooks")
    (project / "parameters" / "syntax.yaml").write_bytes(BAD_FILES["syntax"][0])
    assert cli.main(["--list", "--project", str(project)]) == cli.EXIT_OK
    [line] = [line for line in capsys.readouterr().out.splitlines() if "syntax" in line]
    assert "INVALID:" in line and "line 4, column 5: not valid YAML" in line


def test_a_src_name_far_from_ra_dec_is_refused_before_anything_executes(tmp_path, capsys):
    path = tmp_path / "saturn.yaml"
    path.write_text(
        "workflow: long_term\nparameters:\n  src_name: Saturn\n  RA: 83.63308\n  DEC: 22.0145\n"
        '  T1: "2005-03-01T00:00:00"\n  T2: "2005-04-15T00:00:00"\n  s_max: 0\n',
        encoding="utf-8",
    )
    # src_name Saturn with the Crab's position (Saturn was ~26° away then), and another problem: both reported.
    status = cli.main([str(path), "--output-root", str(tmp_path / "out")], project_root=REPO)
    err = capsys.readouterr().err
    assert status == cli.EXIT_INVALID
    assert "saturn.yaml, run 1/1" in err and "'Saturn' is a solar-system body" in err and "s_max" in err
    assert not (tmp_path / "out").exists()
