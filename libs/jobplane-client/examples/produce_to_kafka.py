"""Submit a job by producing ``job.requested`` straight to Kafka, then follow it over HTTP.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 TOPIC_PREFIX= JOBPLANE_URL=http://127.0.0.1:8000 \
    JOBPLANE_API_KEY=<app key> python produce_to_kafka.py <app id> <registered user id>

Needs the ``kafka`` extra (``pip install 'jobplane-client[kafka]'``). The user must be
registered first: a request for an unknown user ends as a dead job.
"""

from __future__ import annotations

import json
import os
import sys

from jobplane_client import JobplaneClient
from jobplane_client.kafka import JobRequestProducer


def main(app_id: str, user_id: str) -> int:
    with JobRequestProducer(
        os.environ["KAFKA_BOOTSTRAP_SERVERS"], topic_prefix=os.environ.get("TOPIC_PREFIX", "")
    ) as producer:
        job_id = producer.send(app_id, user_id, "thumbnail", {"width": 320, "height": 200})
    # Leaving the block waited for Kafka's acknowledgement: the job is submitted.
    with JobplaneClient(os.environ["JOBPLANE_URL"], os.environ["JOBPLANE_API_KEY"]) as jobs:
        job = jobs.wait(job_id, max_wait_seconds=60)
    print(json.dumps({"job_id": job.job_id, "status": job.status, "result": job.result}))
    return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
