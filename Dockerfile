# Multi-stage build: compile in the Rust image, run in a slim Debian image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Queries are checked against the committed .sqlx/ metadata: no database needed to build.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin cab

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /app cab
COPY --from=build /src/target/release/cab /usr/local/bin/cab
# The stylesheet and scripts are built into the binary.
ENV CAB_LISTEN=0.0.0.0:8080 \
    CAB_LOG_FORMAT=json
USER cab
EXPOSE 8080
ENTRYPOINT ["cab"]
CMD ["serve"]
