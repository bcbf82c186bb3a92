# anvil (Foundry's local chain) for the compose `devnet` profile: the binary npm ships in
# @foundry-rs/anvil-linux-<arch>, the version package-lock.json pins, checked against the lock
# file's sha512 integrity. Build context: this directory.
FROM python:3.11-slim
ARG ANVIL_VERSION=1.7.1
ARG ANVIL_SHA512_AMD64=+XmShybEaxfCrr0OUUZwYEy2OnYZt5pHH9TzBtLv3+VrK0O/ANuNSVEahqNhKHlgX7GRJ59383ofNhxkRWIYTg==
ARG ANVIL_SHA512_ARM64=ykHJmFOGdBR8+9smOKBm9ZZDCCCkLQctiHOAddLvmYx9mPeBDMfq6jP51hKYsO5MG8ClPLSlWe+JpiXPjoXgBQ==
COPY fetch_anvil.py /tmp/fetch_anvil.py
RUN python /tmp/fetch_anvil.py /usr/local/bin/anvil \
    && rm /tmp/fetch_anvil.py \
    && useradd --system --uid 10002 --create-home --home-dir /chain anvil \
    && anvil --version
USER anvil
WORKDIR /chain
VOLUME /chain
EXPOSE 8545
# Blocks every second on an idle chain (confirmations keep coming); the chain is saved in the
# volume every second and when the container stops, and loaded when it starts (a killed
# container loses at most the last second, not the chain the database already knows).
CMD ["anvil", "--host", "0.0.0.0", "--port", "8545", "--chain-id", "31337", "--accounts", "20", \
     "--balance", "100000", "--block-time", "1", "--mixed-mining", "--state", "/chain/state.json", \
     "--state-interval", "1"]
