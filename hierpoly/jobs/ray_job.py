"""The Ray Jobs API route: a sweep job prints its results as a bundle into its log, and
``fetch_job_bundle`` reads the bundle back from the finished job.

Importing this module imports neither JAX nor Ray.
"""
from __future__ import annotations

import base64

from hierpoly.jobs.cluster import AUTH_HINT, INSTALL_HINT, ClusterError, error_message, is_auth_failure

BUNDLE_BEGIN = "-----BEGIN HIERPOLY BUNDLE-----"
BUNDLE_END = "-----END HIERPOLY BUNDLE-----"
FINISHED = ("SUCCEEDED", "FAILED")  # a failed sweep job still prints what it stored


def bundle_to_log(data: bytes) -> str:
    """A bundle as log text: base64 in 76-character lines between two marker lines."""
    text = base64.b64encode(data).decode("ascii")
    return "\n".join([BUNDLE_BEGIN, *(text[i:i + 76] for i in range(0, len(text), 76)), BUNDLE_END])


def bundle_from_log(log: str) -> bytes:
    """The last complete bundle in a job's log (not yet validated: see ``bundles.read_bundle``)."""
    lines = [line.strip() for line in log.splitlines()]
    ends = [i for i, line in enumerate(lines) if line == BUNDLE_END]
    begins = [i for i, line in enumerate(lines) if line == BUNDLE_BEGIN and ends and i < ends[-1]]
    if not begins:
        raise ClusterError("the job's log holds no complete bundle: was it run with `sweep ... --print-bundle`?")
    body = "".join(lines[begins[-1] + 1:ends[-1]])
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise ClusterError("the bundle in the job's log is damaged (not base64)") from None


def fetch_job_bundle(address: str, job_id: str) -> tuple[str, bytes]:
    """(status, bundle bytes) of a finished job, read through the Ray Jobs API at ``address`` (http://HEAD:8265)."""
    if not address.startswith(("http://", "https://")):
        raise ClusterError(f"--fetch reads the Ray Jobs API: give --address http://HEAD:8265, got {address!r}")
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise ClusterError(f"{INSTALL_HINT} (the Jobs API client comes with ray[default])") from None
    try:
        client = JobSubmissionClient(address)
        status = getattr(client.get_job_status(job_id), "value", "")
        log = client.get_job_logs(job_id) if status in FINISHED else ""
    except Exception as err:  # ConnectionError, RuntimeError carrying the HTTP status, ...
        if is_auth_failure(err) or "401" in str(err) or "403" in str(err):
            raise ClusterError(f"the Jobs API at {address} refused this client: {AUTH_HINT}") from None
        raise ClusterError(f"cannot read job {job_id!r} at {address}: {error_message(err)}") from None
    if status not in FINISHED:
        raise ClusterError(f"job {job_id} is {status or 'in an unknown state'}: fetch it once it has finished (ray job status {job_id})")
    return status, bundle_from_log(log)
