# syntax=docker/dockerfile:1
# captionbot in a container: the meeting bot with its offline models, overlay and caption files.
#   CPU:           docker build -t captionbot .
#   GPU box:       docker build --build-arg EXTRAS=models,gpu -t captionbot:gpu .
#                  docker run --gpus all ... captionbot:gpu run ...
#   smoke test:    docker run --rm -v "$PWD/out:/captions" captionbot   (the demo: out/jfk.*)
# compose.yaml runs it on this machine's sound server; the README says how, and how on a GPU box.
#
# The GPU build uses the same Debian image: the gpu extra (jax[cuda12]) installs the CUDA 12
# runtime, cuBLAS and cuDNN as NVIDIA's Python wheels, which are registered with the dynamic
# loader below so CTranslate2 finds them too; the host needs only the NVIDIA driver and the
# NVIDIA Container Toolkit. BASE_IMAGE may name another Debian-based image with Python 3.11+
# (a CUDA image among them); Ubuntu's chromium is a snap, which apt cannot install here.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# models: the offline Whisper weights; add gpu for CUDA, portaudio for PortAudio microphones
# (then also the portaudio profile below, which brings the compiler).
ARG EXTRAS=models
ARG SYSTEM_PROFILES=run
# The unprivileged user's id; compose.yaml sets it to the sound server's owner. (Not "UID",
# which bash, running the installer, keeps read-only.)
ARG USER_ID=1000

# The system packages of deploy/system-packages.txt, through the same installer as on a host.
COPY deploy/system-packages.txt deploy/install-system-packages.sh /opt/captionbot-deploy/
RUN for profile in ${SYSTEM_PROFILES}; do \
        /opt/captionbot-deploy/install-system-packages.sh "$profile"; \
    done \
    && rm -rf /var/lib/apt/lists/*

# The package itself, installed as a wheel (not editable) into its own virtualenv.
COPY pyproject.toml setup.py README.md LICENSE /tmp/captionbot/
COPY bot /tmp/captionbot/bot
COPY overlays /tmp/captionbot/overlays
RUN python3 -m venv /opt/captionbot \
    && /opt/captionbot/bin/pip install --no-cache-dir "/tmp/captionbot[${EXTRAS}]" \
    && rm -rf /tmp/captionbot \
    && find /opt/captionbot -type d -path "*/site-packages/nvidia/*/lib" \
        > /etc/ld.so.conf.d/captionbot-nvidia.conf \
    && ldconfig
ENV PATH=/opt/captionbot/bin:$PATH

RUN useradd --uid "${USER_ID}" --create-home --shell /usr/sbin/nologin captionbot \
    && mkdir -p /captions /home/captionbot/.cache \
    && chown captionbot: /captions /home/captionbot/.cache
USER captionbot
WORKDIR /home/captionbot

# The overlay (captions.html for OBS, live.html for people); beyond loopback it needs a token.
EXPOSE 8765
VOLUME ["/captions"]
ENTRYPOINT ["captionbot"]
CMD ["demo", "--out", "/captions"]
