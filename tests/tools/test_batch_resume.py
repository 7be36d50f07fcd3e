"""pygguf-batch --resume: what stands in an existing output is kept, errors run again (or stay with
--no-retry-errors), damaged lines move aside, duplicates stay errors, and the exit status says
whether errors remain. Through Click's CliRunner on the fake model (test_batch.py's Harness)."""
from __future__ import annotations

import json

from test_batch import Harness, read_results, run_cli, write_jsonl

from pygguf.tools.batch import completed_ids

RECS = [{"id": f"r{i}", "prompt": f"prompt number {i}", "seed": i, "n_predict": 3} for i in range(4)]


def full_run(tmp_path, recs=RECS):
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    assert run_cli(["-i", inp, "-o", out]).exit_code == 0
    return inp, out, out.read_text().splitlines()


def test_error_records_are_retried_and_replaced(tmp_path):
    inp, out, lines = full_run(tmp_path)
    out.write_text("\n".join([lines[0], '{"id": "r1", "line": 2, "error": "boom"}', lines[2]]) + "\n")
    result = run_cli(["-i", inp, "-o", out, "--resume"])
    assert result.exit_code == 0, result.output
    assert "resume: 2 records done (skipped), 1 error records retried" in result.stderr
    got = read_results(out)
    assert sorted(r["id"] for r in got) == ["r0", "r1", "r2", "r3"] and not any("error" in r for r in got)
    assert {r["id"]: r["text"] for r in got} == {r["id"]: r["text"] for r in map(json.loads, lines)}


def test_no_retry_errors_keeps_them_and_exits_1(tmp_path):
    inp, out, lines = full_run(tmp_path)
    out.write_text("\n".join([lines[0], '{"id": "r1", "line": 2, "error": "boom"}', lines[2]]) + "\n")
    result = run_cli(["-i", inp, "-o", out, "--resume", "--no-retry-errors"])
    assert result.exit_code == 1, result.output                        # an error remains in the output
    assert "1 error records kept (--no-retry-errors)" in result.stderr
    got = read_results(out)
    assert [r["id"] for r in got] == ["r0", "r1", "r2", "r3"] and got[1]["error"] == "boom"
    again = run_cli(["-i", inp, "-o", out, "--resume", "--no-retry-errors"])
    assert again.exit_code == 1 and "3 records done (skipped)" in again.stderr
    assert read_results(out) == got
    assert run_cli(["-i", inp, "-o", out, "--no-retry-errors"]).exit_code == 2   # it goes with --resume


def test_old_error_lines_without_a_line_number_are_retried(tmp_path):
    inp, out, lines = full_run(tmp_path)
    out.write_text(lines[0] + '\n{"id": 2, "error": "an error line of an older pygguf"}\n')
    result = run_cli(["-i", inp, "-o", out, "--resume", "--no-retry-errors"])
    assert result.exit_code == 0 and "1 error records retried" in result.stderr
    assert sorted(r["id"] for r in read_results(out)) == ["r0", "r1", "r2", "r3"]


def test_damaged_lines_move_aside_and_their_records_run_again(tmp_path):
    inp, out, lines = full_run(tmp_path)
    middle = lines[1][:25] + "\x00garbage" + lines[1][40:]
    out.write_bytes("\n".join([lines[0], middle, "[1, 2]", lines[2]]).encode() + b'\n{"id": "r3", "te')
    result = run_cli(["-i", inp, "-o", out, "--resume"])
    assert result.exit_code == 0, result.output
    assert f"3 damaged lines moved to {out}.damaged" in result.stderr
    got = read_results(out)
    assert sorted(r["id"] for r in got) == ["r0", "r1", "r2", "r3"]
    assert (tmp_path / "out.jsonl.damaged").read_text() == middle + '\n[1, 2]\n{"id": "r3", "te\n'
    assert not (tmp_path / "out.jsonl.resume-tmp").exists()
    assert run_cli(["-i", inp, "-o", out, "--resume"]).exit_code == 0      # nothing left to repair
    assert read_results(out) == got


def test_a_whole_last_record_missing_its_newline_stands(tmp_path):
    _, out, lines = full_run(tmp_path)
    out.write_text("\n".join(lines))                                    # no final newline
    assert completed_ids(str(out)) == {'"r0"', '"r1"', '"r2"', '"r3"'}
    assert out.read_text() == "\n".join(lines) + "\n"


def test_duplicate_id_error_survives_resume(tmp_path):
    recs = RECS[:2] + [{"id": "r0", "prompt": "again"}]
    inp = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    first = run_cli(["-i", inp, "-o", out])
    assert first.exit_code == 1
    lines = out.read_text().splitlines()
    assert json.loads(lines[2]) == {"id": "r0", "line": 3, "error": 'duplicate id "r0" (first on line 1)'}
    out.write_text("\n".join(lines[:2]) + "\n")                         # killed before the duplicate's line
    resumed = run_cli(["-i", inp, "-o", out, "--resume"])
    assert resumed.exit_code == 1 and out.read_text().splitlines() == lines
    again = run_cli(["-i", inp, "-o", out, "--resume"])                 # the error is retried: still a duplicate
    assert again.exit_code == 1 and out.read_text().splitlines() == lines


def test_resume_of_what_is_not_a_regular_file_is_one_line(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", RECS[:1])
    result = run_cli(["-i", inp, "-o", "/dev/full", "--resume"])
    assert result.exit_code == 1
    assert result.stderr == "error: --resume needs a regular file as its output, and /dev/full is not one\n"


def test_resume_after_an_interrupt_counts_what_it_skipped(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", RECS)
    out = tmp_path / "out.jsonl"
    assert run_cli(["-i", inp, "-o", out], Harness(interrupt_after=6)).exit_code == 130
    n_done = len(read_results(out))
    assert 0 < n_done < 4
    result = run_cli(["-i", inp, "-o", out, "--resume"])
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == f"resume: {n_done} records done (skipped), 0 error records retried"
    assert sorted(r["id"] for r in read_results(out)) == ["r0", "r1", "r2", "r3"]
