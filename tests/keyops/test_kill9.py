"""kill -9 of a KEK rotation job at random points, as an operator would meet it:
`coffre keys rotate kek` killed with SIGKILL, either by the test after a random
delay (anywhere: start-up, creating the version, a batch, the settle wait, the
sweep) or by itself at a random row write inside an uncommitted batch. After each
kill every user logs in and every item opens through a running node; the same
command then resumes the same job (one new version per chain, never another) and
finishes with failures = 0, every blob under the new version."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.keyops.helpers import deploy

CHAINS = 8
KILLS_PER_CHAIN = 5  # 30 trials here; test_kill9_at_rows adds the rest


def _kek_versions(d) -> dict[int, dict]:
    return {r["version"]: r for r in d.status()["hsm"]["roots"] if r["kind"] == "kek" and r["label"]}


def _finish_chain(d, chain_target: str, run: bool = True) -> None:
    if run:
        result = d.cli("keys", "rotate", "kek", "--batch", "7")
        assert result.returncode == 0, result.stdout + result.stderr
    job = [j for j in d.jobs() if j["target"] == chain_target]
    assert len(job) == 1, "running the command again must resume the job, not start another"
    assert job[0]["state"] == "done" and job[0]["failed"] == 0, job[0]
    versions = _kek_versions(d)
    newest = max(versions)
    assert versions[newest]["label"] == chain_target, "no version beyond the chain's target"
    for version, root in versions.items():
        if version != newest:
            assert root["referenced"] == 0, root  # every blob moved, including the node's new sessions
    d.check_everything_opens()


@pytest.mark.slow
def test_kill9_at_random_moments(tmp_path):
    rng = random.Random(20261202)
    d = deploy(tmp_path, users=3, items=4, sessions=30)
    trials = outcomes = 0
    try:
        for chain in range(CHAINS):
            target = f"coffre-kek-v{chain + 2}"
            finished = False
            for _ in range(KILLS_PER_CHAIN):
                proc = d.popen("keys", "rotate", "kek", "--batch", "7")
                time.sleep(rng.uniform(0.3, 2.0))  # start-up is ~0.7 s: early kills land before any write
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    outcomes += 1
                trials += 1
                proc.wait(timeout=30)
                # Killed just after its last commit, a run may have finished the job.
                jobs = d.job_rows()
                finished = any(j["target"] == target and j["state"] == "done" for j in jobs)
                d.check_everything_opens()
                assert {j["target"] for j in jobs} <= {f"coffre-kek-v{n + 2}" for n in range(chain + 1)}
                if finished:
                    break
            _finish_chain(d, target, run=not finished)
    finally:
        d.server.stop()
    print(f"kill -9 at random moments: {trials} trials, {outcomes} killed mid-run")
    assert trials >= 25
    assert outcomes >= trials // 2, "most runs must really be killed"


@pytest.mark.slow
def test_kill9_at_rows(tmp_path):
    """SIGKILL at a random row write, inside a batch not yet committed."""
    rng = random.Random(4242)
    d = deploy(tmp_path, users=3, items=3, sessions=40)
    killed = trials = 0
    try:
        for chain in range(6):
            target = f"coffre-kek-v{chain + 2}"
            finished = False
            for _ in range(5):
                at = rng.randint(1, 45)
                result = d.cli("keys", "rotate", "kek", "--batch", "7", env={"COFFRE_KEYOPS_KILL_AT_ROW": str(at)})
                trials += 1
                if result.returncode == -signal.SIGKILL:
                    killed += 1
                else:  # fewer rows than ``at`` were left: it finished
                    assert result.returncode == 0, result.stderr
                    finished = True
                d.check_everything_opens()
                if finished:
                    break
            _finish_chain(d, target, run=not finished)
    finally:
        d.server.stop()
    print(f"kill -9 at random rows: {trials} trials, {killed} killed mid-batch")
    assert killed >= 10
