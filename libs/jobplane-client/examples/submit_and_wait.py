"""Submit a job over HTTP and wait for its outcome (synchronous client).

    JOBPLANE_URL=http://127.0.0.1:8000 JOBPLANE_API_KEY=<app key> \
        python submit_and_wait.py <user id> <e-mail> [en|ja]

Prints the job's outcome as JSON; exits 1 if the job died.
"""

from __future__ import annotations

import json
import os
import sys
import uuid

from jobplane_client import JobplaneClient
from jobplane_client.http import Language


def main(argv: list[str]) -> int:
    user_id, email = argv[0], argv[1]
    language: Language = "ja" if argv[2:] == ["ja"] else "en"
    with JobplaneClient(os.environ["JOBPLANE_URL"], os.environ["JOBPLANE_API_KEY"]) as jobs:
        jobs.register_user(user_id, email, language=language)
        submitted = jobs.submit(
            user_id,
            "thumbnail",
            {"width": 640, "height": 480, "color": "teal", "size": [160, 120]},
            # Sending the same request again (a timeout, a crash) returns the same job.
            idempotency_key=f"example-{uuid.uuid4().hex}",
        )
        job = jobs.wait(submitted.job_id, max_wait_seconds=60)
    print(json.dumps({"job_id": job.job_id, "status": job.status, "result": job.result}))
    return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
