# syntax=docker/dockerfile:1
# One image for every role: `serve --role all|api|worker` as the command, or GGPROV_ROLE.
# ECS stops a task with SIGTERM: ggprov stops accepting, finishes in-flight requests and jobs
# within GGPROV_SHUTDOWN_GRACE_SECS (keep the task's stopTimeout above it) and exits 0.
# Dependencies are cooked in their own layer with cargo-chef, so code changes rebuild only ggprov.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin ggprov
COPY . .
RUN cargo build --release --locked --bin ggprov

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ggprov --create-home ggprov
COPY --from=builder /src/target/release/ggprov /usr/local/bin/ggprov
USER 10001
# Listening beyond loopback, ggprov refuses to start without authentication unless told so:
# set GGPROV_AUTH=api-key (with GGPROV_API_KEYS) or jwt, or GGPROV_AUTH=none on purpose.
ENV GGPROV_LISTEN=0.0.0.0:8080 \
    GGPROV_DATA_DIR=/var/lib/ggprov \
    GGPROV_LOG_FORMAT=json \
    GGPROV_ROLE=all
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ggprov"]
STOPSIGNAL SIGTERM
CMD ["serve"]
