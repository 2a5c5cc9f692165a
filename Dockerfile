# syntax=docker/dockerfile:1
#
# dhctl and dhctl-health in one small image. One image serves every role (docs/operations.md):
#   docker run IMAGE                                  dhctl-health on :3000 (the default command)
#   docker run IMAGE dhctl migrate --wait 60s         the init container / one-shot migrator
#   docker run IMAGE dhctl partition create --ahead 3 the daily partition job
# There is no ENTRYPOINT, so the command names the binary and reads as it does on a terminal.
#
# No Docker engine runs on the project's machines: .ci/run lints this file with hadolint and
# tests/it/packaging.rs checks that it ships every binary of the crate.

# The toolchain the project builds and tests with (rust-version in Cargo.toml is the floor).
# Bookworm on both sides: the binaries link the glibc that the runtime image has.
FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or Cargo.lock
# change, not on every source edit. The stubs satisfy the manifest's targets (the [[test]] path
# must exist even for a build that compiles no test). Then `cargo clean --package dhctl` forgets
# the stub build of dhctl itself: COPY keeps the sources' modification times, which can be older
# than the stub build, and cargo, comparing times, could take the stubs (and a build script run
# that embedded no migrations) for up to date. The dependencies' artifacts stay.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src/bin tests/it \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/dhctl-health.rs \
    && touch src/lib.rs tests/it/main.rs \
    && cargo build --release --locked \
    && cargo clean --release --package dhctl \
    && rm -rf src

COPY src ./src
COPY sql ./sql
COPY partitions ./partitions
RUN cargo build --release --locked --bins

FROM gcr.io/distroless/cc-debian12:nonroot

# Overridden by the build (docker build --build-arg REVISION=$(git rev-parse HEAD) …); VERSION
# defaults to the crate version, which tests/it/packaging.rs keeps in step with Cargo.toml.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="dhctl" \
      org.opencontainers.image.description="Schema migrations, partition maintenance and health endpoints for the DataHub API gateway's PostgreSQL" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.documentation="docs/operations.md" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

# The migrations and partition policies are compiled into dhctl: the image needs no other file.
COPY --from=builder /src/target/release/dhctl /src/target/release/dhctl-health /usr/local/bin/

# A numeric user (no passwd entry needed): Kubernetes' runAsNonRoot can only verify numeric ids.
USER 1001:1001
EXPOSE 3000

# dhctl-health probes itself: the runtime image has no shell, curl or wget. It checks liveness,
# not readiness, so a database outage marks the container unready in an orchestrator rather than
# getting it restarted by one. With PORT changed, override the HEALTHCHECK to match.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/dhctl-health", "--check-url", "http://127.0.0.1:3000/health/live"]

CMD ["/usr/local/bin/dhctl-health"]
