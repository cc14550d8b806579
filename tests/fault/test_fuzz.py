"""Fuzz the gateway from its own OpenAPI document (schemathesis) with each kind of key: an
app's API key, the admin key, and the callback token of a real open attempt. No request
may get a 5xx: bad input is refused at the door (4xx), whatever it is.

The gateway runs as its own process (with the dispatcher, so that a job really has an
attempt and a callback token) on the fault suite's Kafka and store. Per operation and key:
schemathesis' coverage cases (boundary values, missing and wrong-typed fields), then at most
MAX_EXAMPLES random valid or invalid requests. Bounded: no new operation after TIME_BOUND s.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case

from tests.fault.backend import read_receipts
from tests.fault.processes import ADMIN_KEY, BackendProcess, Deployment
from tests.fault.workload import register

MAX_EXAMPLES = 80
TIME_BOUND = 150.0
# The operators' routes, fuzzed with the admin key first (the time bound never cuts them).
OPERATOR_PATHS = (
    "/v1/admin/dead/redrive",
    "/v1/dead/redrive",
    "/v1/admin/jobs/{job_id}/cancel",
    "/v1/jobs/{job_id}/cancel",
)


class Fuzzer:
    def __init__(self, base_url: str, job_id: str) -> None:
        self.base_url = base_url
        self.job_id = job_id
        self.schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        self.by_class: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.covered: set[str] = set()
        self.began = time.monotonic()

    def run(self, key_name: str, key: str, only: Collection[str] | None = None) -> None:
        """Every operation (of the paths ``only``, when given): schemathesis' boundary cases,
        then random valid and invalid ones."""
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        for result in self.schema.get_all_operations():
            if time.monotonic() - self.began > TIME_BOUND:
                return
            if isinstance(result, Err):
                raise AssertionError(f"the gateway's OpenAPI document: {result.err()}")
            operation = result.ok()
            if only is not None and operation.path not in only:
                continue
            self.covered.add(f"{key_name} {operation.method.upper()} {operation.path}")
            config = self.schema.config.generation_for(operation=operation)
            for case in self.schema.iter_coverage_cases(
                operation, generation_modes=modes, generation_config=config
            ):
                self._send(key_name, key, case, real_job=False)
            strategy = st.one_of(*(operation.as_strategy(mode) for mode in modes))
            self._fuzz(key_name, key, strategy)

    def _fuzz(self, key_name: str, key: str, strategy: st.SearchStrategy[Case[Any]]) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy, real_job=st.booleans())
        def one(case: Case[Any], real_job: bool) -> None:
            self._send(key_name, key, case, real_job=real_job)

        one()

    def _send(self, key_name: str, key: str, case: Case[Any], *, real_job: bool) -> None:
        if real_job and "job_id" in (case.path_parameters or {}):
            # Half of the random cases aim at the real job (the one whose token we hold).
            case.path_parameters = {**(case.path_parameters or {}), "job_id": self.job_id}
        try:
            response = case.call(
                base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=15
            )
        except Exception as exc:  # a dropped connection is as bad as a 500
            self.by_class[f"{key_name} no answer"] += 1
            self.server_errors.append(f"{key_name}: {case.method} {case.formatted_path}: {exc}")
            return
        self.by_class[f"{key_name} {response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            self.server_errors.append(
                f"{key_name}: {case.method} {case.formatted_path} → {response.status_code}:"
                f" {response.text[:200]}\n    {case.as_curl_command()}"
            )


@pytest.fixture
def fuzz_deployment(deploy: Callable[[str], Deployment], backend: BackendProcess) -> Deployment:
    deployment = deploy("fuzz")
    deployment.start("gateway", "dispatcher")
    return deployment


@pytest.mark.timeout(300)
async def test_gateway_fuzz_no_server_error(
    fuzz_deployment: Deployment, backend: BackendProcess, fuzz_report: list[str]
) -> None:
    async with httpx.AsyncClient(base_url=fuzz_deployment.gateway_url, timeout=15) as http:
        api_key = await register(http, fuzz_deployment)
        submitted = await http.post(
            "/v1/jobs",
            json={"user_id": "user-0", "job_type": "fuzz", "payload": {"mode": "hold"}},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        token = await _callback_token(backend, job_id)

    began = time.monotonic()
    fuzzer = Fuzzer(fuzz_deployment.gateway_url, job_id)
    await asyncio.to_thread(fuzzer.run, "admin", ADMIN_KEY, OPERATOR_PATHS)
    await asyncio.to_thread(fuzzer.run, "app", api_key, OPERATOR_PATHS)
    for key_name, key in (("app", api_key), ("admin", ADMIN_KEY), ("callback", token)):
        await asyncio.to_thread(fuzzer.run, key_name, key)
    seconds = time.monotonic() - began
    operators = {f"{k} POST {p}" for k in ("admin", "app") for p in OPERATOR_PATHS}
    assert operators <= fuzzer.covered, sorted(operators - fuzzer.covered)

    total = sum(fuzzer.by_class.values())
    fuzz_report.append(f"{total} requests in {seconds:.0f}s; responses by key and class:")
    fuzz_report += [f"  {name}: {count}" for name, count in sorted(fuzzer.by_class.items())]
    fuzz_report += [f"  5xx: {error}" for error in fuzzer.server_errors[:20]]
    assert not fuzzer.server_errors, "\n".join(fuzzer.server_errors[:20])


async def _callback_token(backend: BackendProcess, job_id: str) -> str:
    """The callback token the dispatcher gave the backend for the job's first attempt."""
    for _ in range(150):
        for receipt in read_receipts(backend.receipts):
            if receipt.job_id == job_id and receipt.callback_token:
                return receipt.callback_token
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} was not dispatched within 30 s")
