# Keel's container image: `docker build -t keel .`, or `docker compose up --build`.
# Listens on 0.0.0.0:8080 with /etc/keel/providers.yaml (this repository's
# providers.yaml unless another file is mounted there).

# The workspace's manifests, with an empty stand-in for each crate's lib.rs and
# main.rs: enough for cargo to build every dependency. This stage reruns on
# any change, but what it hands on changes only with a manifest or Cargo.lock,
# so the dependency layer below stays cached while sources change.
FROM rust:1-bookworm AS manifests
WORKDIR /src
COPY . .
RUN mkdir /out \
 && cp Cargo.toml Cargo.lock /out/ \
 && find . -name Cargo.toml -not -path './Cargo.toml' -not -path './fuzz/*' | while read -r manifest; do \
      dir="$(dirname "$manifest")"; \
      mkdir -p "/out/$dir/src"; \
      cp "$manifest" "/out/$dir/"; \
      if [ -f "$dir/src/lib.rs" ]; then : > "/out/$dir/src/lib.rs"; fi; \
      if [ -f "$dir/src/main.rs" ]; then echo 'fn main() {}' > "/out/$dir/src/main.rs"; fi; \
    done

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY --from=manifests /out/ ./
RUN cargo build --release --locked -p keel
# The real sources, and the SQL migrations the binary embeds. The touch makes
# them newer than the stand-ins, whatever times they were copied with, so
# cargo rebuilds Keel's own crates.
COPY crates crates
COPY migrations migrations
RUN find crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p keel

FROM debian:bookworm-slim
# Root certificates for HTTPS to the providers and to webhook receivers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Keel needs no privilege. Its home is the working directory, where the
# default sqlite://keel.db store lives (mount a volume there to keep it).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/keel \
      --shell /usr/sbin/nologin keel
COPY --from=builder /src/target/release/keel /usr/local/bin/keel
COPY providers.yaml /etc/keel/providers.yaml
# providers.yaml listens on ${KEEL_LISTEN:-127.0.0.1:8080}, which a
# container's port mapping cannot reach.
ENV KEEL_LISTEN=0.0.0.0:8080
USER 10001:10001
WORKDIR /var/lib/keel
EXPOSE 8080
ENTRYPOINT ["keel"]
CMD ["serve", "--config", "/etc/keel/providers.yaml"]
