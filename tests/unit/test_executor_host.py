"""`orion up`'s submission of the executor's host job, against a fake Jobs client."""

from __future__ import annotations

from orion_ray.cluster import _submit_host_job


class Jobs:
    """A Jobs API that refuses the first ``refusals`` submissions; ``lose_answer`` accepts a job
    but raises as if the answer were lost."""

    def __init__(self, refusals: int = 0, lose_answer: bool = False):
        self.refusals, self.lose_answer = refusals, lose_answer
        self.jobs: dict[str, str] = {}

    def submit_job(self, *, entrypoint: str, submission_id: str, metadata: dict) -> str:
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("Request failed with status code 500: No available agent to submit job")
        self.jobs[submission_id] = entrypoint
        if self.lose_answer:
            raise TimeoutError("read timed out")
        return submission_id

    def get_job_info(self, sid: str) -> str:
        if sid not in self.jobs:
            raise RuntimeError(f"job {sid} does not exist")
        return self.jobs[sid]


def test_a_refused_submission_is_retried_until_the_agent_is_up():
    jobs = Jobs(refusals=2)
    assert not _submit_host_job(jobs, "h-1", "python")
    assert not _submit_host_job(jobs, "h-1", "python")
    assert _submit_host_job(jobs, "h-1", "python")
    assert list(jobs.jobs) == ["h-1"]
    assert jobs.jobs["h-1"].startswith("python -m orion_ray.runtime.executor_host --namespace orion")


def test_a_lost_answer_to_an_accepted_submission_is_not_submitted_twice():
    jobs = Jobs(lose_answer=True)
    assert _submit_host_job(jobs, "h-2", "python")
    assert list(jobs.jobs) == ["h-2"]
