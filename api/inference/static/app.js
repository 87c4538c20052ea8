// TritonGate detection page: camera stream over a WebSocket, or one photo over REST.
// Served by the API itself; no external resources, so it works offline.
"use strict";

const IMAGE_INTERVAL_MS = 42; // ~24 frames per second, as the book's page
const RECONNECT_DELAY_MS = 2000;
const FIGURES_WINDOW_MS = 2000;

const $ = (id) => document.getElementById(id);

// --- account ---------------------------------------------------------------------------------

async function csrfToken() {
  const reply = await fetch("/csrf", { credentials: "same-origin" });
  if (!reply.ok) return "";
  const body = await reply.json();
  return body.csrf_token || "";
}

async function currentUser() {
  const reply = await fetch("/users/me", { credentials: "same-origin" });
  return reply.ok ? reply.json() : null;
}

async function showAccount() {
  const user = await currentUser();
  // The server marks the page when inference needs no login (TRITONGATE_INFERENCE_AUTH=open).
  const inferenceOpen = document.body.dataset.inferenceAuth === "open";
  $("login").hidden = Boolean(user) || inferenceOpen;
  $("app").hidden = !user && !inferenceOpen;
  $("user-email").textContent = user ? user.email : "";
  $("button-logout").hidden = !user;
  if (user || inferenceOpen) await listCameras();
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const form = new URLSearchParams(new FormData($("form-login")));
  const reply = await fetch("/login", {
    method: "POST",
    body: form,
    credentials: "same-origin",
    headers: { "x-csrf-token": await csrfToken() },
  });
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    $("login-error").textContent = body.detail || `Login failed (${reply.status})`;
    return;
  }
  await showAccount();
}

async function logout() {
  stopStream();
  await fetch("/logout", {
    method: "POST",
    credentials: "same-origin",
    headers: { "x-csrf-token": await csrfToken() },
  });
  await showAccount();
}

// --- drawing -----------------------------------------------------------------------------------

function drawObjects(canvas, result, scaleX = 1, scaleY = 1) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  drawBoxes(context, result.objects, scaleX, scaleY);
}

function drawBoxes(context, objects, scaleX, scaleY) {
  context.lineWidth = 3;
  context.font = "bold 16px sans-serif";
  for (const object of objects) {
    const [x1, y1, x2, y2] = object.box;
    context.strokeStyle = "#49fb35";
    context.strokeRect(x1 * scaleX, y1 * scaleY, (x2 - x1) * scaleX, (y2 - y1) * scaleY);
    context.fillStyle = "#ff0000";
    const caption = `${object.label} ${(object.score * 100).toFixed(0)}%`;
    context.fillText(caption, x1 * scaleX + 4, Math.max(16, y1 * scaleY - 5));
  }
}

// --- camera stream -------------------------------------------------------------------------------

const stream = {
  socket: null,
  media: null,
  timer: null,
  sentAt: new Map(), // frame number → time sent (performance.now())
  sent: 0,
  results: [], // times of recent results, for fps
  dropped: 0,
  wanted: false,
};

async function listCameras() {
  const select = $("camera-select");
  if (select.options.length) return;
  try {
    const probe = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    probe.getTracks().forEach((track) => track.stop());
  } catch (error) {
    $("stream-status").textContent = `No camera access: ${error.message}`;
    return;
  }
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const device of devices) {
    if (device.kind !== "videoinput") continue;
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label || `Camera ${select.options.length + 1}`;
    select.appendChild(option);
  }
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/object-detection`;
}

function updateFigures(result) {
  const now = performance.now();
  stream.results.push(now);
  while (stream.results.length && now - stream.results[0] > FIGURES_WINDOW_MS) stream.results.shift();
  const fps = stream.results.length > 1
    ? (stream.results.length - 1) / ((now - stream.results[0]) / 1000) : 0;
  stream.dropped += result.dropped;
  const sentAt = stream.sentAt.get(result.frame);
  for (const frame of stream.sentAt.keys()) if (frame <= result.frame) stream.sentAt.delete(frame);
  $("stat-fps").textContent = fps.toFixed(1);
  $("stat-dropped").textContent = String(stream.dropped);
  $("stat-rtt").textContent = sentAt === undefined ? "–" : (now - sentAt).toFixed(0);
  $("stat-latency").textContent = result.latency_ms.toFixed(0);
  $("stat-objects").textContent = String(result.objects.length);
}

function sendFrame(video) {
  const socket = stream.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  if (socket.bufferedAmount > 1 << 20) return; // the network is the bottleneck: skip a frame
  const capture = document.createElement("canvas");
  capture.width = video.videoWidth;
  capture.height = video.videoHeight;
  capture.getContext("2d").drawImage(video, 0, 0);
  capture.toBlob((blob) => {
    if (!blob || socket.readyState !== WebSocket.OPEN) return;
    stream.sent += 1;
    stream.sentAt.set(stream.sent, performance.now());
    socket.send(blob);
  }, "image/jpeg", 0.85);
}

function connect(deviceId) {
  const video = $("video");
  const canvas = $("canvas");
  const socket = new WebSocket(socketUrl());
  socket.binaryType = "arraybuffer";
  stream.socket = socket;
  stream.sent = 0;
  stream.sentAt.clear();
  socket.addEventListener("open", async () => {
    $("stream-status").textContent = "Streaming.";
    socket.send(JSON.stringify({ threshold: Number($("threshold").value) }));
    if (!stream.media) {
      stream.media = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { deviceId: deviceId ? { exact: deviceId } : undefined, width: { max: 640 }, height: { max: 480 } },
      });
      video.srcObject = stream.media;
      await video.play();
    }
    canvas.width = video.videoWidth || 640;
    canvas.height = video.videoHeight || 480;
    stream.timer = setInterval(() => sendFrame(video), IMAGE_INTERVAL_MS);
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.error) {
      $("stream-status").textContent = `Frame ${message.frame ?? "–"}: ${message.error}`;
      return;
    }
    drawObjects(canvas, message);
    updateFigures(message);
  });
  socket.addEventListener("close", (event) => {
    clearInterval(stream.timer);
    stream.timer = null;
    if (event.code === 1008) {
      $("stream-status").textContent = "Not authorised: log in again.";
      stream.wanted = false;
    } else if (stream.wanted) {
      $("stream-status").textContent = `Disconnected (${event.code}); reconnecting…`;
      setTimeout(() => stream.wanted && connect(deviceId), RECONNECT_DELAY_MS);
      return;
    } else {
      $("stream-status").textContent = "Stopped.";
    }
    stopMedia();
  });
}

function startStream(event) {
  event.preventDefault();
  stopStream();
  stream.wanted = true;
  stream.dropped = 0;
  stream.results = [];
  $("button-start").disabled = true;
  $("button-stop").disabled = false;
  connect($("camera-select").value);
}

function stopMedia() {
  if (stream.media) stream.media.getTracks().forEach((track) => track.stop());
  stream.media = null;
  $("video").pause();
  $("button-start").disabled = false;
  $("button-stop").disabled = true;
}

function stopStream() {
  stream.wanted = false;
  if (stream.socket) stream.socket.close(1000);
  stream.socket = null;
  clearInterval(stream.timer);
  stopMedia();
}

function changeThreshold() {
  const value = Number($("threshold").value);
  $("threshold-value").textContent = value.toFixed(2);
  if (stream.socket && stream.socket.readyState === WebSocket.OPEN) {
    stream.socket.send(JSON.stringify({ threshold: value }));
  }
}

// --- photo upload ----------------------------------------------------------------------------

async function detectPhoto(event) {
  event.preventDefault();
  const file = $("photo-input").files[0];
  if (!file) return;
  $("photo-status").textContent = "Detecting…";
  const body = new FormData();
  body.append("image", file);
  const threshold = Number($("threshold").value);
  const reply = await fetch(`/object-detection?threshold=${threshold}`, {
    method: "POST",
    body,
    credentials: "same-origin",
    headers: { "x-csrf-token": await csrfToken() },
  });
  const result = await reply.json();
  if (!reply.ok) {
    $("photo-status").textContent = `Error ${reply.status}: ${result.detail}`;
    return;
  }
  const image = await createImageBitmap(file, { imageOrientation: "from-image" });
  const canvas = $("photo-canvas");
  const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(image, 0, 0, image.width * scale, image.height * scale);
  drawBoxes(context, result.objects, scale, scale);
  const list = $("photo-objects");
  list.replaceChildren(...result.objects.map((object) => {
    const item = document.createElement("li");
    item.textContent = `${object.label} ${(object.score * 100).toFixed(1)}%`;
    return item;
  }));
  $("photo-status").textContent = `${result.objects.length} object(s) in a ${result.image_size.join("×")} image.`;
}

// --- wiring ------------------------------------------------------------------------------------

function selectMode(mode) {
  $("mode-camera").hidden = mode !== "camera";
  $("mode-photo").hidden = mode !== "photo";
  $("tab-camera").classList.toggle("active", mode === "camera");
  $("tab-photo").classList.toggle("active", mode === "photo");
  if (mode !== "camera") stopStream();
}

document.addEventListener("DOMContentLoaded", () => {
  $("form-login").addEventListener("submit", login);
  $("button-logout").addEventListener("click", logout);
  $("form-connect").addEventListener("submit", startStream);
  $("button-stop").addEventListener("click", stopStream);
  $("threshold").addEventListener("input", changeThreshold);
  $("form-photo").addEventListener("submit", detectPhoto);
  $("tab-camera").addEventListener("click", () => selectMode("camera"));
  $("tab-photo").addEventListener("click", () => selectMode("photo"));
  showAccount();
});
