"""Corpus and output for a remote cluster: small local corpora travel, big ones are refused first."""

from __future__ import annotations

import pytest

from raybake.clusters.transport import MIB, for_cluster, is_local_path, on_cluster, output_root, upload_size
from raybake.config import Settings
from raybake.errors import RaybakeError
from raybake.spec import JobSpec


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("one document")
    (folder / "b.jsonl").write_text('{"text": "two"}\n')
    (folder / ".git").mkdir()
    (folder / ".git" / "pack").write_bytes(b"x" * (2 * MIB))
    (folder / "results").mkdir()
    (folder / "results" / "old.parquet").write_bytes(b"x" * (2 * MIB))
    return folder


def spec(corpus: str, output: str = "s3://bucket/out/j", **kw) -> JobSpec:
    return JobSpec(corpus=corpus, output=output, name="j", **kw)


def test_path_kinds():
    assert is_local_path("examples/corpus")
    assert not is_local_path("s3://bucket/corpus")
    assert not is_local_path("cluster:/mnt/data/corpus")
    assert on_cluster("cluster:/mnt/data/corpus") == "/mnt/data/corpus"
    assert on_cluster("s3://bucket/x") == "s3://bucket/x"


def test_a_local_folder_becomes_the_working_dir_and_the_corpus_its_root(corpus):
    moved = for_cluster(spec(str(corpus)), limit_mib=1)
    assert moved.runs.corpus == "."
    assert moved.uploads["working_dir"] == str(corpus)
    assert {".git", "results"} <= set(moved.uploads["excludes"])
    assert moved.runs.arguments()[:2] == ["--corpus", "."]


def test_version_control_and_old_results_do_not_count_toward_the_limit(corpus):
    assert upload_size(corpus) == len("one document") + len('{"text": "two"}\n')


def test_a_single_file_travels_alone_in_its_folder(corpus):
    moved = for_cluster(spec(str(corpus / "a.txt")), limit_mib=1)
    assert moved.runs.corpus == "a.txt"
    assert moved.uploads["working_dir"] == str(corpus)
    assert sorted(moved.uploads["excludes"]) == ["/.git", "/b.jsonl", "/results"]


def test_over_the_limit_is_refused_with_advice(corpus):
    (corpus / "big.txt").write_bytes(b"y" * (MIB + 1))
    with pytest.raises(RaybakeError, match=r"over the 1 MiB upload limit.*s3://.*cluster:/") as refused:
        for_cluster(spec(str(corpus)), limit_mib=1)
    assert refused.value.code == 2


@pytest.mark.parametrize(
    ("given", "seen"),
    [("s3://bucket/corpus", "s3://bucket/corpus"), ("cluster:/mnt/data/corpus", "/mnt/data/corpus")],
)
def test_uris_and_cluster_paths_pass_through_without_upload(given, seen):
    moved = for_cluster(spec(given, output="cluster:/mnt/data/out/j"), limit_mib=1)
    assert (moved.runs.corpus, moved.runs.output) == (seen, "/mnt/data/out/j")
    assert (moved.named.corpus, moved.named.output) == (given, "cluster:/mnt/data/out/j")
    assert not moved.uploads


def test_a_local_output_is_refused_where_the_cluster_cannot_share_this_disk(corpus):
    with pytest.raises(RaybakeError, match="is on this machine"):
        for_cluster(spec(str(corpus), output="results/j"), limit_mib=1)


def test_a_local_output_is_kept_for_an_address_that_may_share_it(corpus, capsys):
    output = str(corpus / "results" / "j")
    moved = for_cluster(spec(str(corpus), output=output), limit_mib=1, cwd=corpus, shares_disk=True)
    assert moved.runs.output == output and moved.named.output == output
    assert "only a cluster that shares this disk" in capsys.readouterr().out


def test_a_missing_local_corpus_is_refused(tmp_path):
    with pytest.raises(RaybakeError, match="no corpus"):
        for_cluster(spec(str(tmp_path / "nope")), limit_mib=1)


def test_a_users_entrypoint_takes_the_working_directory_and_a_relative_corpus(corpus):
    moved = for_cluster(spec(str(corpus / "a.txt"), entrypoint="python mine.py"), limit_mib=1, cwd=corpus)
    assert moved.uploads["working_dir"] == str(corpus)
    assert moved.runs.corpus == "a.txt"


def test_output_root_local_and_remote():
    assert output_root(Settings()) == "results"
    assert output_root(Settings(backend="rayjob", remote_output="s3://b/r/")) == "s3://b/r"
    assert output_root(Settings(backend="address")) == "results"
    with pytest.raises(RaybakeError, match="cannot write to this machine"):
        output_root(Settings(backend="rayjob"))
