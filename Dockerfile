# failoverd in a container: multi-stage build to a small Debian runtime, running as an
# unprivileged user that may bind port 53 and nothing more.
#
#   docker build -t failoverd .
#   docker run -d --name failoverd --network host \
#       -v /etc/failoverd:/etc/failoverd:ro -v failoverd-state:/var/lib/failoverd failoverd
#
# Host networking is the usual choice: the agent answers on the node's own address and probes the
# other nodes. The configuration is mounted at /etc/failoverd (config.yaml, and secrets through
# environment variables: docker run -e FAILOVERD_SMTP_PASSWORD=...).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
RUN cargo build --release --locked \
 && strip target/release/failoverd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --home-dir /var/lib/failoverd --shell /usr/sbin/nologin failoverd \
 && mkdir -p /etc/failoverd /var/lib/failoverd \
 && chown failoverd:failoverd /var/lib/failoverd \
 && chmod 0750 /var/lib/failoverd
COPY --from=build /src/target/release/failoverd /usr/local/bin/failoverd
# Port 53 as a non-root user: the file capability, since the container runs with USER set.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/failoverd \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y
USER failoverd
VOLUME ["/var/lib/failoverd"]
EXPOSE 53/udp 53/tcp
# Healthy when the agent's local API answers (it runs the checks and serves DNS).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["failoverd", "status", "--config", "/etc/failoverd/config.yaml"]
ENTRYPOINT ["failoverd"]
CMD ["run", "--config", "/etc/failoverd/config.yaml", "--state-dir", "/var/lib/failoverd"]
