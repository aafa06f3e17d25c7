# Build stage: compile the release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin supernode

# Runtime stage: slim Debian with the binary, running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/supernode --create-home supernode
COPY --from=build /src/target/release/supernode /usr/local/bin/supernode
COPY config.toml /etc/supernode/config.toml
USER supernode
ENV SUPERNODE_HOME_DIR=/var/lib/supernode
VOLUME ["/var/lib/supernode"]
EXPOSE 8002 8001
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8002/_ping || exit 1
ENTRYPOINT ["/usr/local/bin/supernode", "--config", "/etc/supernode/config.toml"]
