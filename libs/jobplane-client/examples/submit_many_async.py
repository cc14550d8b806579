"""Submit several jobs at once with the asyncio client and wait for all of them.

    JOBPLANE_URL=http://127.0.0.1:8000 JOBPLANE_API_KEY=<app key> \
        python submit_many_async.py <user id> <count>

Prints one JSON line per job.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from jobplane_client import AsyncJobplaneClient


async def main(user_id: str, count: int) -> list[str]:
    async with AsyncJobplaneClient(
        os.environ["JOBPLANE_URL"], os.environ["JOBPLANE_API_KEY"]
    ) as jobs:
        submitted = await asyncio.gather(
            *(
                jobs.submit(user_id, "thumbnail", {"width": 100 + n, "height": 100})
                for n in range(count)
            )
        )
        done = await asyncio.gather(
            *(jobs.wait(job.job_id, max_wait_seconds=60) for job in submitted)
        )
    for job in done:
        print(json.dumps({"job_id": job.job_id, "status": job.status}))
    return [job.status for job in done]


if __name__ == "__main__":
    statuses = asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    sys.exit(0 if all(s == "succeeded" for s in statuses) else 1)
