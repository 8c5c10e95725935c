// captionbot's init script: runs in the meeting page before any of the page's own scripts.
// - camera: getUserMedia/enumerateDevices return a canvas.captureStream(30) track painted with
//   the compositor's JPEG frames (WebSocket from Python) and a silent microphone track;
// - audio in: every remote WebRTC audio track is read by an AudioWorklet at 16 kHz and sent to
//   the capture process over a WebSocket (binary: uint16 track key + float32 samples);
// - state: window.__captionbot.state() tells Python about live remote tracks and names.
// CAPTIONBOT_CONFIG is replaced by Python with {audioUrl, videoUrl, width, height,
// perParticipant, tileSelector, nameSelector}.
(() => {
  const config = CAPTIONBOT_CONFIG;
  if (window.__captionbot) return;

  // ---- camera: a canvas fed with the compositor's frames ---------------------------------
  const canvas = document.createElement("canvas");
  canvas.width = config.width;
  canvas.height = config.height;
  const paint = canvas.getContext("2d");
  paint.fillStyle = "#1e2430";
  paint.fillRect(0, 0, canvas.width, canvas.height);
  let framesDrawn = 0;
  let drawing = false;

  function connectVideo() {
    const socket = new WebSocket(config.videoUrl);
    socket.binaryType = "blob";
    socket.onmessage = async (event) => {
      if (drawing) return; // skip a frame while the previous one is drawing
      drawing = true;
      try {
        const bitmap = await createImageBitmap(event.data);
        paint.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        bitmap.close();
        framesDrawn += 1;
      } catch (error) {
        // a damaged frame: the next one repaints the canvas
      } finally {
        drawing = false;
      }
    };
    socket.onclose = () => setTimeout(connectVideo, 500);
  }
  connectVideo();

  const cameraStream = canvas.captureStream(30);
  let silentTrack = null;
  function silentAudioTrack() {
    if (!silentTrack || silentTrack.readyState === "ended") {
      const context = new AudioContext();
      silentTrack = context.createMediaStreamDestination().stream.getAudioTracks()[0];
    }
    return silentTrack;
  }
  function cameraTrack() {
    // a fresh track each time: pages stop the old one on replaceTrack or camera toggles
    const track = cameraStream.getVideoTracks()[0].clone();
    track.contentHint = "text"; // keep the resolution, drop frames instead (legible captions)
    return track;
  }
  const fakeDevices = [
    { deviceId: "captionbot-camera", kind: "videoinput", label: "captionbot camera", groupId: "captionbot" },
    { deviceId: "captionbot-mic", kind: "audioinput", label: "captionbot (muted)", groupId: "captionbot" },
    { deviceId: "captionbot-speaker", kind: "audiooutput", label: "captionbot speaker", groupId: "captionbot" },
  ].map((d) => ({ ...d, toJSON() { return d; } }));

  if (navigator.mediaDevices) {
    navigator.mediaDevices.getUserMedia = async (constraints) => {
      const tracks = [];
      if (constraints && constraints.video) tracks.push(cameraTrack());
      if (constraints && constraints.audio) tracks.push(silentAudioTrack().clone());
      return new MediaStream(tracks);
    };
    navigator.mediaDevices.enumerateDevices = async () => fakeDevices;
    navigator.mediaDevices.getDisplayMedia = async () => new MediaStream([cameraTrack()]);
  }

  // ---- audio in: remote tracks → AudioWorklet at 16 kHz → WebSocket ---------------------
  const WORKLET = `
    class Tap extends AudioWorkletProcessor {
      constructor(options) {
        super();
        this.key = options.processorOptions.key;
        this.block = new Float32Array(1600);
        this.filled = 0;
      }
      process(inputs) {
        const input = inputs[0];
        if (input && input.length) {
          const channels = input.length;
          const frames = input[0].length;
          for (let i = 0; i < frames; i++) {
            let sum = 0;
            for (let c = 0; c < channels; c++) sum += input[c][i];
            this.block[this.filled++] = sum / channels;
            if (this.filled === this.block.length) {
              this.port.postMessage(this.block.slice(0));
              this.filled = 0;
            }
          }
        }
        return true;
      }
    }
    registerProcessor("captionbot-tap", Tap);`;
  let audioContext = null;
  let workletReady = null;
  let audioSocket = null;
  const pending = [];
  const tracks = new Map(); // track id -> {key, track, name, node}
  let nextKey = 1;
  let mixNode = null;

  function connectAudio() {
    audioSocket = new WebSocket(config.audioUrl);
    audioSocket.binaryType = "arraybuffer";
    audioSocket.onopen = () => {
      for (const entry of tracks.values()) announce(entry);
      while (pending.length) audioSocket.send(pending.shift());
    };
    audioSocket.onclose = () => setTimeout(connectAudio, 500);
  }
  connectAudio();

  function send(message) {
    if (audioSocket && audioSocket.readyState === WebSocket.OPEN) audioSocket.send(message);
    else if (typeof message === "string") pending.push(message);
  }
  function announce(entry) {
    send(JSON.stringify({ type: "track", key: entry.key, name: entry.name || null }));
  }

  function ensureContext() {
    if (!audioContext) {
      audioContext = new AudioContext({ sampleRate: 16000 });
      const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
      workletReady = audioContext.audioWorklet.addModule(url);
    }
    return workletReady;
  }

  function tapNode(key) {
    const node = new AudioWorkletNode(audioContext, "captionbot-tap", {
      processorOptions: { key },
      channelCount: 1,
      channelCountMode: "explicit",
    });
    node.port.onmessage = (event) => {
      const samples = event.data;
      const message = new ArrayBuffer(4 + samples.byteLength);
      new DataView(message).setUint32(0, key, true);
      new Float32Array(message, 4).set(samples);
      send(message);
    };
    // a worklet only runs when connected to the destination; it outputs nothing (silence)
    node.connect(audioContext.destination);
    return node;
  }

  async function tapTrack(track) {
    if (track.kind !== "audio" || tracks.has(track.id)) return;
    const entry = { key: config.perParticipant ? nextKey++ : 0, track, name: null, source: null };
    tracks.set(track.id, entry);
    await ensureContext();
    if (audioContext.state === "suspended") await audioContext.resume();
    entry.source = audioContext.createMediaStreamSource(new MediaStream([track]));
    if (config.perParticipant) {
      entry.source.connect(tapNode(entry.key));
      announce(entry);
    } else {
      if (!mixNode) {
        mixNode = tapNode(0);
        announce({ key: 0, name: null });
      }
      entry.source.connect(mixNode);
    }
    track.addEventListener("ended", () => untap(track));
  }

  function untap(track) {
    const entry = tracks.get(track.id);
    if (!entry) return;
    tracks.delete(track.id);
    if (entry.source) entry.source.disconnect();
    if (config.perParticipant) send(JSON.stringify({ type: "ended", key: entry.key }));
  }

  // The page's name for a remote track: the participant tile holding a media element that
  // plays it (config.tileSelector), its name element's text (config.nameSelector).
  function nameOf(track) {
    if (!config.tileSelector) return null;
    for (const media of document.querySelectorAll("audio, video")) {
      const stream = media.srcObject;
      if (!stream || !stream.getTracks) continue;
      const plays = stream.getTracks().some((t) => t.id === track.id);
      if (!plays) continue;
      const tile = media.closest(config.tileSelector);
      if (!tile) continue;
      const label = config.nameSelector ? tile.querySelector(config.nameSelector) : tile;
      const text = label && (label.getAttribute("data-name") || label.textContent || "").trim();
      if (text) return text;
    }
    return null;
  }

  setInterval(() => {
    for (const [id, entry] of tracks) {
      if (entry.track.readyState === "ended") {
        untap(entry.track);
        continue;
      }
      if (config.perParticipant && !entry.name) {
        entry.name = nameOf(entry.track);
        if (entry.name) announce(entry);
      }
    }
  }, 300);

  const peers = new Set();
  const NativePeerConnection = window.RTCPeerConnection;
  if (NativePeerConnection) {
    class TappedPeerConnection extends NativePeerConnection {
      constructor(...args) {
        super(...args);
        peers.add(this);
        this.addEventListener("track", (event) => tapTrack(event.track));
        this.addEventListener("connectionstatechange", () => {
          if (this.connectionState === "closed") peers.delete(this);
        });
      }
      close() {
        peers.delete(this);
        return super.close();
      }
    }
    window.RTCPeerConnection = TappedPeerConnection;
    window.webkitRTCPeerConnection = TappedPeerConnection;
  }

  window.__captionbot = {
    state() {
      const live = [...tracks.values()].filter((e) => e.track.readyState === "live");
      return {
        remoteAudioTracks: live.length,
        names: live.map((e) => e.name).filter(Boolean),
        peerConnections: peers.size,
        framesDrawn,
      };
    },
  };
})();
