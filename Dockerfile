# hoist: build with the locked dependencies, run on a slim Debian with the
# git and ssh that pushing needs.
FROM docker.io/library/rust:1.95-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin hoist

FROM docker.io/library/debian:trixie-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hoist /usr/local/bin/hoist
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hoist"]
CMD ["controller"]
