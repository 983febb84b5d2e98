"""Chunked MMODA jobs against a real local MMODA: nothing lost, nothing recomputed."""

from __future__ import annotations

import numpy as np
import pytest

from integral_workflows.jobs import (
    DONE,
    FAILED,
    SKIPPED,
    ChunkCache,
    FatalRequestError,
    JobRunner,
    ProductRequest,
    RetryPolicy,
    RunRecord,
    split_into_chunks,
)
from integral_workflows.mosaic import SkyMosaic
from integral_workflows.session import Session

FAST = RetryPolicy(
    budget_s=120.0,
    backoff_s=0.05,
    max_backoff_s=0.2,
    poll_interval_s=0.05,
    max_poll_interval_s=0.2,
    poll_failure_budget_s=2.0,
    stall_timeout_s=1.5,
)


def crab_scws(server, *, good: int, belt: int = 0, start: float = 2000.0) -> list[str]:
    """Good Crab-field ScWs, plus some radiation-belt ones, from the server's archive."""
    archive = server.backend.analysis.archive
    table = archive.table[archive.select(start, start + 400.0, ra=83.633, dec=22.0145, radius=12.0)]
    good_ids = [f"{s}.001" for s, b, g in zip(table["SWID"], table["IN_BELT"], table["GOOD_ISGRI"]) if not b and g > 0]
    belt_ids = [f"{s}.001" for s, b in zip(table["SWID"], table["IN_BELT"]) if b]
    assert len(good_ids) >= good and len(belt_ids) >= belt
    return sorted(good_ids[:good] + belt_ids[:belt])


def image_request(**changes) -> ProductRequest:
    parameters = dict(osa_version="OSA11.2", E1_keV=28.0, E2_keV=40.0, detection_threshold=7.0, RA=83.633, DEC=22.0145)
    parameters.update(changes)
    return ProductRequest("isgri", "isgri_image", parameters)


def runner_for(server, tmp_path, **kwargs) -> JobRunner:
    kwargs.setdefault("retry", FAST)
    session = Session(url=server.url, cache_dir=False, retry=kwargs["retry"], progress=False)
    return JobRunner(session, cache=ChunkCache(tmp_path / "cache"), progress=False, **kwargs)


@pytest.mark.parametrize("s_max, expected", [(2, [2, 2, 1]), (-1, [2, 2, 1]), (-2, [4, 1])])
def test_split_into_chunks(s_max, expected):
    scws = ["010000010010.001", "010000020010.001", "010100010010.001", "010100020010.001", "010200010010.001"]
    chunks = split_into_chunks(list(reversed(scws)), s_max=s_max)
    assert [len(c.scw_ids) for c in chunks] == expected
    assert [s for c in chunks for s in c.scw_ids] == scws
    if s_max == -1:
        assert [c.label for c in chunks] == ["rev0100", "rev0101", "rev0102"]


def synthetic_scws(seed: int, revolutions: range, per_revolution: tuple[int, int]) -> list[str]:
    """ScW ids of consecutive revolutions with a random number of pointings each."""
    rng = np.random.default_rng(seed)
    return [
        f"{rev:04d}{pointing:04d}0010.001"
        for rev in revolutions
        for pointing in sorted(rng.choice(np.arange(1, 120), rng.integers(*per_revolution), replace=False))
    ]


@pytest.mark.parametrize("seed", range(5))
def test_chunks_are_stable_when_the_period_grows_or_a_scw_is_lost(seed):
    scws = synthetic_scws(seed, range(300, 360), (0, 15))
    chunks = {c.scw_ids for c in split_into_chunks(scws, s_max=50)}
    assert all(len(c) <= 50 for c in chunks) and sorted(s for c in chunks for s in c) == sorted(scws)
    # one month (about 11 revolutions) earlier: only chunks holding the new ScWs change
    earlier = synthetic_scws(seed + 100, range(289, 300), (0, 15)) + scws
    new = {c.scw_ids for c in split_into_chunks(earlier, s_max=50)} - chunks
    added = set(earlier) - set(scws)
    # chunks to compute: those holding new ScWs, plus at most one old chunk re-cut at the boundary
    assert len([c for c in new if not set(c) & added]) <= 1
    # one ScW lost in the middle: one chunk changes
    rng = np.random.default_rng(seed)
    lost = scws[int(rng.integers(len(scws) // 4, 3 * len(scws) // 4))]
    remaining = {c.scw_ids for c in split_into_chunks([s for s in scws if s != lost], s_max=50)}
    assert len(remaining - chunks) == 1


def test_a_crowded_revolution_is_cut_along_its_pointings():
    scws = [f"0500{pointing:04d}0010.001" for pointing in range(1, 131)]
    chunks = split_into_chunks(scws, s_max=50)
    assert all(len(c.scw_ids) <= 50 for c in chunks) and sum(len(c.scw_ids) for c in chunks) == 130
    assert all(c.label.startswith("rev0500.") for c in chunks)


def test_split_refuses_zero_and_malformed_ids():
    with pytest.raises(ValueError, match="s_max=0"):
        split_into_chunks(["010000010010.001"], s_max=0)
    with pytest.raises(ValueError, match="RRRRPPPPSSSF.VVV"):
        split_into_chunks(["0100000100"], s_max=5)


@pytest.mark.parametrize("policy", ["skip-scw", "fail-job"])
def test_every_scw_ends_done_or_skipped_with_its_reason(server_factory, tmp_path, policy):
    """Whether the backend reports unanalysed ScWs in a finished job (as the real one) or fails the job."""
    server = server_factory(scw_failure_policy=policy)
    scws = crab_scws(server, good=9, belt=3)
    record = runner_for(server, tmp_path).run(image_request(), split_into_chunks(scws, s_max=4))
    assert set(record.outcomes) == set(scws)
    skipped = record.scws(SKIPPED)
    assert len(skipped) == 3 and all("radiation belt" in record.outcomes[s].reason for s in skipped)
    assert len(record.scws(DONE)) == 9 and record.scws(FAILED) == []
    done_in_pieces = sorted(s for piece in record.pieces for s in piece.scw_ids)
    assert done_in_pieces == record.scws(DONE)
    mosaic = SkyMosaic.from_data_collection(record.pieces[0].data_collection())
    assert mosaic.simulated and np.isfinite(mosaic.significance).any()
    # a second run reads the same accounting from its cache
    again = runner_for(server, tmp_path).run(image_request(), split_into_chunks(scws, s_max=4))
    assert again.submissions == 0
    assert {s: o.status for s, o in again.outcomes.items()} == {s: o.status for s, o in record.outcomes.items()}


def test_a_repeated_run_sends_no_job(server, tmp_path):
    scws = crab_scws(server, good=6)
    chunks = split_into_chunks(scws, s_max=3)
    first = runner_for(server, tmp_path).run(image_request(), chunks)
    submitted = server.stats()["jobs_submitted"]
    second = runner_for(server, tmp_path).run(image_request(), chunks)
    assert server.stats()["jobs_submitted"] == submitted
    assert second.submissions == 0 and second.cache_hits == len(chunks)
    assert [p.job_id for p in second.pieces] == [p.job_id for p in first.pieces] or sorted(
        p.job_id for p in second.pieces
    ) == sorted(p.job_id for p in first.pieces)


def test_faults_at_a_high_rate_lose_no_good_scw(server_factory, tmp_path):
    server = server_factory(
        faults={"http_500": 0.25, "drop_connection": 0.15, "stall_job": 0.2, "fail_job": 0.2}, seed=3
    )
    good = crab_scws(server, good=12)
    record = runner_for(server, tmp_path, max_concurrent=3).run(image_request(), split_into_chunks(good, s_max=3))
    assert record.scws(DONE) == sorted(good)
    assert record.retries > 0
    stats = server.stats()
    assert stats.get("faults_http_500", 0) + stats.get("faults_dropped_connections", 0) > 0


def test_a_refused_request_stops_with_every_scw_failed(server, tmp_path):
    scws = crab_scws(server, good=4)
    record = RunRecord()
    with pytest.raises(FatalRequestError, match="ISGRI energy range"):
        runner_for(server, tmp_path).run(image_request(E1_keV=10.0), split_into_chunks(scws, s_max=2), record=record)
    assert record.scws(FAILED) == scws
    assert all("refused" in record.outcomes[s].reason for s in scws)


def test_cache_key_depends_on_parameters_scws_and_backend():
    request = image_request()
    key = request.cache_key(["010000010010.001"], backend="a")
    assert key == image_request().cache_key(["010000010010.001"], backend="a")
    assert key != request.cache_key(["010000010010.001"], backend="b")
    assert key != request.cache_key(["010000020010.001"], backend="a")
    assert key != image_request(detection_threshold=6.0).cache_key(["010000010010.001"], backend="a")
