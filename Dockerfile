# Images for the chat server and client: `docker build --target server|client .`
# (normally through `make images`, which first fills .lab/wheels/ on the host).
#
# Hermetic: nothing here touches the network. Every wheel comes from .lab/wheels/ in the build
# context (scripts/wheels.sh) and is installed with `pip install --no-index`.
# BASE_IMAGE is the official python:3.12-slim by default; scripts/base-image.sh passes an
# offline Debian equivalent (python3 at /usr/bin, 3.11) when no registry is reachable, so only
# `python3` and `python3 -m venv` are used here, which both bases have.
ARG BASE_IMAGE=python:3.12-slim

# --- build: a venv holding the project and its dependencies, nothing else ------------------
FROM ${BASE_IMAGE} AS build
COPY .lab/wheels/ /tmp/wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-index --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/wheels 'p2p-chat[fast]' \
 && /opt/venv/bin/python -m pip uninstall -y -q setuptools pip \
 && /opt/venv/bin/python -c 'import chat_protocol, chat_shell, chat_history, prompt_toolkit, uvloop; print(chat_protocol.core_kind())'

# --- runtime: shared by both targets ------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
# `make images` prunes superseded (dangling) builds by this label, and nothing else.
LABEL org.opencontainers.image.title="p2p-chat" \
      org.opencontainers.image.description="UDP peer-to-peer chat: directory server and client"
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin chat \
 && install -d -o chat -g chat -m 0700 /data
COPY --from=build /opt/venv /opt/venv
# /data: the home of keys and pins (compose.yaml mounts a named volume there, so a user keeps
# their identity from one `docker compose run` to the next).
ENV CHAT_HOME=/data \
    PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER chat
WORKDIR /home/chat

# --- server: UDP directory server --------------------------------------------------------
FROM runtime AS server
ENV CHAT_PORT=5000
EXPOSE 5000/udp
# A real datagram round trip (docs/CLI.md); compose.yaml sets the same with its own timings.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["chat-server", "--probe"]
ENTRYPOINT ["chat-server"]

# --- client: interactive terminal client (run with -it) -----------------------------------
FROM runtime AS client
ENTRYPOINT ["chat-client"]
