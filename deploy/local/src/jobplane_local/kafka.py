"""Apache Kafka 4.1.1 as a single KRaft node (broker + controller) run with plain `java`."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from jobplane_local.config import ENV_KAFKA_CONTROLLER_PORT, ENV_KAFKA_PORT
from jobplane_local.paths import deploy_dir
from jobplane_local.processes import LocalInfraError, port_open, require_tool
from jobplane_local.service import Log, Port, Service, inherited_env

JAVA_HINT = "install a Java 17+ JRE (Debian: apt-get install openjdk-17-jre-headless)"
MAVEN_HINT = "install Apache Maven 3.6+ (Debian: apt-get install maven)"
ENV_MAVEN_REPO_LOCAL = "MAVEN_REPO_LOCAL"

LOG4J2_YAML = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: state.change.logger
        level: WARN
      - name: kafka.log.LogCleaner
        level: WARN
      - name: org.apache.kafka.clients
        level: WARN
"""


def new_cluster_id() -> str:
    """A KRaft cluster id: the url-safe base64 of a random UUID's 16 bytes, without padding.
    Never one that starts with "-" (one draw in 64): `kafka-storage format -t` would read it as
    an option and fail; Kafka's own ``Uuid.randomUuid`` draws again in that case too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Service):
    name = "kafka"

    # Not in the background (``background_nice``), although a submit does not wait for it: the
    # retry service's transactions do. With the broker at nice 10 and the machine 90 % busy the
    # retry service requested retries 235-498 ms late (p99), against 51-132 ms at 0, and the
    # submits were answered as fast either way.

    @property
    def pom(self) -> Path:
        return deploy_dir() / "kafka" / "pom.xml"

    @property
    def libs_dir(self) -> Path:
        return self.dir / "libs"

    @property
    def server_properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log4j2_yaml(self) -> Path:
        return self.dir / "log4j2.yaml"

    @property
    def marker(self) -> str:
        return str(self.server_properties)

    @property
    def ports(self) -> list[Port]:
        return [
            Port(self.config.kafka_port, "the Kafka broker", ENV_KAFKA_PORT),
            Port(
                self.config.kafka_controller_port, "the KRaft controller", ENV_KAFKA_CONTROLLER_PORT
            ),
        ]

    # --- install: jars from Maven Central ---------------------------------------------------

    def install(self, log: Log) -> None:
        require_tool("java", JAVA_HINT)
        stamp = self.libs_dir / ".pom-sha256"
        digest = hashlib.sha256(self.pom.read_bytes()).hexdigest()
        if stamp.is_file() and stamp.read_text().strip() == digest:
            return
        mvn = require_tool("mvn", MAVEN_HINT)
        log(f"kafka: resolving jars with Maven into {self.libs_dir} ...")
        began = time.monotonic()
        staging = self.dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        argv = [
            mvn, "-B", "-q", "-f", str(self.pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]  # fmt: skip
        repo_local = os.environ.get(ENV_MAVEN_REPO_LOCAL)
        if repo_local:
            argv.append(f"-Dmaven.repo.local={repo_local}")
        self.dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-30:]
            raise LocalInfraError(
                f"Maven could not resolve the Kafka jars (exit {result.returncode}):\n"
                + "\n".join(output)
            )
        (staging / ".pom-sha256").write_text(digest + "\n")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        log(f"kafka: jars resolved in {time.monotonic() - began:.1f}s")

    # --- configure and run -----------------------------------------------------------------

    def _java_argv(self, main: str) -> list[str]:
        return [
            require_tool("java", JAVA_HINT),
            f"-Xmx{self.config.kafka_heap}",
            *self.config.kafka_jvm_opts.split(),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j2_yaml}",
            "-cp",
            f"{self.libs_dir}/*",
            main,
        ]

    def server_properties_text(self) -> str:
        host, port, cport = (
            self.config.host,
            self.config.kafka_port,
            self.config.kafka_controller_port,
        )
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{cport}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # How often the coordinator aborts transactions past their timeout (Kafka: 10 s):
            # a transaction left open by a killed producer holds read_committed consumers
            # until then.
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
            # The platform creates its topics explicitly.
            "auto.create.topics.enable": "false",
        }
        lines = ["# Written by jobplane-local on every start; edit config.py instead."]
        lines += [f"{key}={value}" for key, value in props.items()]
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server_properties.write_text(self.server_properties_text())
        self.log4j2_yaml.write_text(LOG4J2_YAML)
        if (self.data_dir / "meta.properties").is_file():
            return
        argv = self._java_argv("kafka.tools.StorageTool")
        argv += ["format", "-t", new_cluster_id(), "-c", str(self.server_properties)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise LocalInfraError(
                f"formatting the Kafka storage in {self.data_dir} failed:\n"
                + (result.stdout + result.stderr).strip()
            )

    def command(self) -> list[str]:
        return [*self._java_argv("kafka.Kafka"), str(self.server_properties)]

    def environment(self) -> dict[str, str]:
        return inherited_env()

    def ready(self) -> bool:
        if not port_open(self.config.host, self.config.kafka_port):
            return False
        return broker_answers(self.config.kafka_bootstrap)


def broker_answers(bootstrap: str) -> bool:
    """True if the broker at `bootstrap` answers a metadata request listing itself."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=3).brokers)
    except Exception:
        return False
