# hoist: build with the locked dependencies, run on a slim Debian with the
# git and ssh that pushing needs.
FROM docker.io/library/rust:1.95-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin hoist

FROM docker.io/library/debian:trixie-slim
# ssh refuses to run for a uid without a passwd entry: hoist gets one.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --user-group --home-dir /var/lib/hoist --no-create-home hoist
COPY --from=build /src/target/release/hoist /usr/local/bin/hoist
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hoist"]
CMD ["controller"]
