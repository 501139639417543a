"""`recsys bench` on small sizes: every section present, numbers sane and internally consistent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsys import bench
from recsys.bench_corpus import prepare, quotas
from recsys.bench_servers import Server, free_port, uvicorn_argv
from recsys.bench_wrk import WrkMissing, find_wrk, parse_wrk, run_wrk, write_script
from recsys.cli import main
from recsys.settings import Settings

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8000
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   90.00%
    Req/Sec     5.00k   300.00     6.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%    1.30ms
     90%    1.60ms
     99%    1.20s
  29876 requests in 3.00s, 5.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:   9958.67
Transfer/sec:      1.71MB
"""


def test_percentiles_by_hand() -> None:
    # 1..100 ms: p50 = 50.5 ms, p99 = 99.01 ms (linear interpolation)
    got = bench.percentiles([i / 1000 for i in range(1, 101)])
    assert got["p50_ms"] == pytest.approx(50.5) and got["p99_ms"] == pytest.approx(99.01)


def test_index_bench_reports_exact_recall_one_for_flat() -> None:
    vectors = bench.synthetic_vectors(3000, 16, seed=2)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    result = bench.bench_index(vectors, Settings(hnsw_ef_search=64), queries=50)
    flat, hnsw = result["by_type"]["flat"], result["by_type"]["hnsw"]
    assert flat["recall@10_vs_exact"] == 1.0 and 0.8 <= hnsw["recall@10_vs_exact"] <= 1.0
    assert flat["bytes_per_article"] >= 16 * 4 and hnsw["bytes_per_article"] > flat["bytes_per_article"]
    blas = bench.bench_blas(vectors, batch=64)
    assert blas["uses_blas_by_default"] is (64 * 16 >= blas["threshold"])
    threads = bench.bench_threads(vectors, clients=2, per_client=5)
    assert threads["omp_1"]["requests"] == 10


def test_wrk_text_report_parsed_with_units() -> None:
    got = parse_wrk(WRK_OUTPUT)
    assert got["requests"] == 29876 and got["requests_per_s"] == pytest.approx(9958.67)
    assert got["p50_ms"] == pytest.approx(0.85) and got["p90_ms"] == pytest.approx(1.6)
    assert got["p99_ms"] == pytest.approx(1200.0)
    assert got["non_2xx_3xx"] == 12 and got["socket_errors"] == {"connect": 0, "read": 2, "write": 0, "timeout": 1}
    marker = 'RECSYS_WRK {"status_counts": {"404": 12, "200": 29864}, "requests": 29876, "duration_us": 3000000, ' \
             '"p50_us": 851, "p90_us": 1603, "p99_us": 1200400, "errors": {}}\n'
    exact = parse_wrk(WRK_OUTPUT + marker)
    assert exact["status_counts"] == {"200": 29864, "404": 12} and exact["p50_ms"] == pytest.approx(0.851)
    assert exact["requests_per_s"] == pytest.approx(29876 / 3.0)


def test_quotas_spread_over_sets() -> None:
    assert quotas({"big": 1000, "mid": 300, "tiny": 10}, 600) == {"tiny": 10, "mid": 295, "big": 295}
    assert quotas({"a": 5, "b": 5}, 100) == {"a": 5, "b": 5}
    assert sum(quotas({"a": 70, "b": 50, "c": 1}, 100).values()) == 100


def test_missing_wrk_is_exit_2_with_how_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(WrkMissing):
        find_wrk("no-such-wrk-binary")
    assert main(["bench", "--skip-micro", "--wrk", "no-such-wrk-binary", "--out", "/nonexistent/x.json"]) == 2
    assert "apt-get install wrk" in capsys.readouterr().err


def test_bench_modules_do_not_import_httpx() -> None:
    code = ("import sys, recsys.cli, recsys.bench_cli, recsys.bench_run, recsys.bench_http, recsys.bench_txtai, "
            "recsys.bench_corpus, recsys.bench_report, recsys.bench_bare; assert 'httpx' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0


def test_cli_bench_micro_writes_json_and_markdown(tmp_path: Path, tiny_model_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_MODEL", str(tiny_model_path))
    out = tmp_path / "bench.json"
    assert main(["bench", "--skip-api", "--sizes", "2000", "--encode", "64", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["encoder"]["sentences"] == 64 and result["encoder"]["sentences_per_s"] > 0
    assert result["index_synthetic"][0]["articles"] == 2000 and "http" not in result
    assert "sentences/s" in out.with_suffix(".md").read_text()


def test_corpus_is_ingested_once_then_reused(tmp_path: Path, tiny_model_path: Path) -> None:
    settings = Settings(model=str(tiny_model_path))
    first = prepare(None, 50, tmp_path, settings)
    again = prepare(None, 50, tmp_path, settings)
    assert first.info["reused"] is False and again.info["reused"] is True and first.folder == again.folder
    assert len(again.ids) == 50 == first.info["articles"] and all(i.startswith("sample_articles:") for i in again.ids)
    assert first.info["build_s"] >= 0 and first.info["ingest_articles_per_s"] > 0
    assert prepare(None, 40, tmp_path, settings).folder != first.folder


@needs_wrk
def test_real_wrk_run_counts_statuses_in_lua(tmp_path: Path) -> None:
    port = free_port()
    with Server("bare", uvicorn_argv("recsys.bench_bare:app_from_env", port), port, "/v1/related/x", tmp_path) as s:
        script = write_script(tmp_path, "mixed", ["/v1/related/a?limit=5", "/v1/related/b?limit=5", "/missing"])
        run = run_wrk(find_wrk(), s.url, script, connections=2, threads=2, duration_s=1, server_pid=s.pid)
    assert s.proc is not None and s.proc.poll() is not None  # ended by its pid
    counts = run["status_counts"]
    assert set(counts) == {"200", "404"} and sum(counts.values()) == run["requests"] > 0
    assert counts["404"] == run["non_2xx_3xx"] and 0 < run["p50_ms"] <= run["p99_ms"]
    assert run["threads"] == 2 and run["wrk_cpu_s"] > 0 and run["server_cpu_s"] > 0 and run["wall_s"] >= 1
    assert len(run["loadavg_before"]) == 3 == len(run["loadavg_after"])


@needs_wrk
def test_cli_bench_http_against_bare(tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_MODEL", str(tiny_model_path))
    out = tmp_path / "bench.json"
    args = ["bench", "--skip-micro", "--connections", "1,4", "-d", "1", "--rounds", "1", "--warmup", "0",
            "--modes", "cold", "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    http = result["http"]
    assert http["cpus"] >= 1 and http["wrk"].startswith("wrk") and result["corpus"]["articles"] > 0
    levels = http["modes"]["cold"]["levels"]
    assert [lv["connections"] for lv in levels] == [1, 4]
    for lv in levels:
        recsys, bare = lv["recsys"], lv["bare_json"]
        assert set(recsys["runs"][0]["status_counts"]) == {"200"} and set(bare["runs"][0]["status_counts"]) == {"200"}
        assert lv["ratio"]["requests_per_s"] == pytest.approx(recsys["requests_per_s"] / bare["requests_per_s"])
    floor = http["modes"]["cold"]["vs_bytes_floor"][0]
    assert floor["ratio"]["requests_per_s"] == pytest.approx(floor["recsys"]["requests_per_s"]
                                                             / floor["bare_bytes"]["requests_per_s"])
    assert "recsys versus bare FastAPI (JSON), cold" in out.with_suffix(".md").read_text()
