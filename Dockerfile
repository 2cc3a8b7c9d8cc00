# syntax=docker/dockerfile:1
# keyscope in a container. Three stages:
#
#   build    compiles keyscope with the locked dependencies (Rust = Cargo.toml's rust-version)
#   action   the GitHub Action as a container (docker/action.yml): keyscope, bash, git, python3
#            and the Action's scripts
#   runtime  (the default) the binary alone on distroless, as a non-root user:
#              docker build -t keyscope .
#              docker run --rm -v "$PWD:/scan:ro" keyscope scan --isolated .
#
# The release workflow builds and pushes both images for each tag.

ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY rules rules
COPY policies policies
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && strip target/release/keyscope \
    && cp target/release/keyscope /usr/local/bin/keyscope \
    && keyscope --version

# Runs as root, as GitHub recommends for container actions: the workspace it mounts belongs to
# the runner's user, and the entrypoint marks it safe for git.
FROM debian:bookworm-slim AS action
# Debian's stable point releases replace package versions, so pinned versions would stop
# installing; the base image tag is what fixes the distribution.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bash ca-certificates git python3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/keyscope /usr/local/bin/keyscope
COPY scripts/github-action.sh scripts/github-action-report.py /opt/keyscope/scripts/
COPY docker/entrypoint.sh /opt/keyscope/entrypoint.sh
ENTRYPOINT ["/opt/keyscope/entrypoint.sh"]

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /usr/local/bin/keyscope /usr/local/bin/keyscope
COPY LICENSE /usr/share/doc/keyscope/LICENSE
# distroless's `nonroot` user, by number so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
WORKDIR /scan
ENTRYPOINT ["/usr/local/bin/keyscope"]
CMD ["scan", "."]
