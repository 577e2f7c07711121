"""JSON Lines files: records holding Unicode line separators stay one line, appends are whole or absent."""

import os

import pytest

from tqstar.eval.rundir import keep_complete_chunks, read_records, records_path, traces_path
from tqstar.jsonl import append_jsonl, dumps, read_jsonl

SEPARATORS = ["\u2028", "\u2029", "\u0085"]


@pytest.mark.parametrize("separator", SEPARATORS)
def test_a_record_holding_a_unicode_line_separator_round_trips_and_keeps_the_records_after_it(tmp_path, separator):
    path = tmp_path / "log.jsonl"
    records = [{"text": "before"}, {"text": f"one{separator}two", "é": "ü"}, {"text": "after"}]
    append_jsonl(path, records)
    assert separator not in dumps(records[1])
    assert "é" in dumps(records[1])  # everything else stays UTF-8 as written
    assert read_jsonl(path) == records


def test_a_file_written_with_raw_separators_reads_back_whole(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"text": "a\u2028b"}\n{"text": "c"}\n{"text": "to', encoding="utf-8")
    assert read_jsonl(path) == [{"text": "a\u2028b"}, {"text": "c"}]


def _record(index: int, response: str) -> dict:
    return {"method": "greedy", "prompt_index": index, "prompt": f"p{index}", "response": response,
            "reward": 0.5, "config": {}}


def test_resuming_an_eval_keeps_the_records_after_one_holding_a_line_separator(tmp_path):
    records = [_record(0, "plain"), _record(1, "line\u2028separated"), _record(2, "plain"), _record(3, "plain")]
    append_jsonl(records_path(tmp_path), records)
    append_jsonl(traces_path(tmp_path), [{"method": "greedy", "prompt_index": i, "position": 0,
                                          "token": "x\u2029"} for i in range(4)])
    done = keep_complete_chunks(tmp_path, {("greedy", 0): [0, 1], ("greedy", 2): [2, 3]})
    assert done == {("greedy", 0), ("greedy", 2)}
    assert read_records(tmp_path) == records
    assert len(read_jsonl(traces_path(tmp_path))) == 4


def test_an_append_that_writes_in_parts_writes_every_byte(tmp_path, monkeypatch):
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, bytes(data[:7])))  # 7 bytes a call
    path = tmp_path / "log.jsonl"
    records = [{"text": "a" * 50, "i": i} for i in range(3)]
    append_jsonl(path, records)
    append_jsonl(path, records)
    assert read_jsonl(path) == records + records


@pytest.mark.parametrize("after_bytes", [0, 10, 60])
def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch, after_bytes):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"kept": 1}])
    before = path.read_bytes()
    write, written = os.write, []

    def failing_write(fd, data):
        if sum(written) >= after_bytes:
            raise OSError(28, "No space left on device")
        written.append(write(fd, bytes(data[:10])))
        return written[-1]

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        append_jsonl(path, [{"text": "b" * 100}])
    assert path.read_bytes() == before
    monkeypatch.undo()
    append_jsonl(path, [{"next": 2}])
    assert read_jsonl(path) == [{"kept": 1}, {"next": 2}]
