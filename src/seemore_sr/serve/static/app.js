// seemore serve: upload images, follow their jobs, compare and download the results.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const active = new Map(); // job id -> EventSource, for jobs not over yet

function fill(select, values, label = (v) => v) {
  for (const v of values) select.add(new Option(label(v), v));
}

async function init() {
  const config = await (await fetch("/api/config")).json();
  fill($("#model"), config.models.map((m) => m.name), (n) => {
    const m = config.models.find((x) => x.name === n);
    return `${n} (x${m.scale})`;
  });
  const denoiseShown = () => {
    const m = config.models.find((x) => x.name === $("#model").value);
    $("#denoise-controls").hidden = !(m && m.denoise && m.name.endsWith("-real")); // the -real weights' slider
    $("#denoise").disabled = $("#denoise-auto").checked;
    $("#denoise-value").textContent = $("#denoise-auto").checked ? "auto" : ($("#denoise").value / 100).toFixed(1);
  };
  $("#model").onchange = denoiseShown;
  $("#denoise").oninput = denoiseShown;
  $("#denoise-auto").onchange = denoiseShown;
  denoiseShown();
  fill($("#precision"), config.precisions);
  fill($("#tile"), config.tiles, (t) => (t === "auto" ? "auto" : t === "0" ? "off (whole image)" : `${t} px`));
  fill($("#format"), config.formats, (f) => f || "same as input");
  $("#limits").textContent =
    `Up to ${(config.max_pixels / 1e6).toFixed(0)} megapixels and ${(config.max_bytes / 2 ** 20).toFixed(0)} MB ` +
    `per image; ${config.max_queue} images can wait in the queue.`;
}

function facts(dl, rows) {
  dl.replaceChildren();
  for (const [k, v] of rows) {
    dl.append(Object.assign(document.createElement("dt"), { textContent: k }));
    dl.append(Object.assign(document.createElement("dd"), { textContent: v }));
  }
}

function showState(card, job) {
  const bar = $("progress", card);
  const text = $(".state .text", card);
  card.className = `job ${job.state}`;
  if (job.state === "queued") {
    bar.removeAttribute("value");
    text.textContent = job.position > 1 ? `waiting (${job.position - 1} ahead)` : "waiting";
  } else if (job.state === "running") {
    if (job.total > 1) {
      bar.max = job.total;
      bar.value = job.done;
      text.textContent = `tiles ${job.done} of ${job.total}`;
    } else {
      bar.removeAttribute("value");
      text.textContent = "upscaling (whole image)";
    }
  } else if (job.state === "failed" || job.state === "cancelled") {
    bar.hidden = true;
    text.textContent = job.state === "failed" ? `failed: ${job.error}` : "cancelled";
  } else if (job.state === "done") {
    showResult(card, job);
  }
}

function zoomTo(card, job) {
  const zoom = $(".zoom", card).value;
  const compare = $(".compare", card);
  const view = $(".viewport", card);
  if (zoom === "fit") {
    // the whole image in view (the viewport is at most 70% of the window high), never past 1:1
    const room = view.clientWidth - 2;
    const tall = ((Math.floor(0.7 * window.innerHeight) - 4) * job.out_width) / job.out_height;
    compare.style.width = `${Math.floor(Math.min(room, tall, job.out_width / devicePixelRatio))}px`;
  } else {
    compare.style.width = `${(job.out_width * Number(zoom)) / devicePixelRatio}px`;
  }
  // open at the centre of the image, not its top-left corner
  view.scrollLeft = (view.scrollWidth - view.clientWidth) / 2;
  view.scrollTop = (view.scrollHeight - view.clientHeight) / 2;
}

function showBefore(card, job) {
  const kind = job.has_bicubic ? $(".before-kind", card).value : "input";
  const before = $(".before", card);
  before.src = `/api/jobs/${job.id}/preview/${kind}`;
  before.classList.toggle("pixels", kind === "input");
  $(".tag.left", card).textContent = kind === "input" ? "before: pixels enlarged" : "before: bicubic";
}

function showResult(card, job) {
  const result = $(".result", card);
  result.hidden = false;
  const base = `/api/jobs/${job.id}`;
  $(".after", card).src = `${base}/preview/output`;
  $(".before-kind", card).disabled = !job.has_bicubic;
  $(".before-kind", card).onchange = () => showBefore(card, job);
  showBefore(card, job);
  const link = $(".download", card);
  link.href = `${base}/result`;
  link.download = job.filename;
  link.textContent = `Download ${job.filename}`;
  const split = $(".split", card);
  const setSplit = () => {
    $(".before", card).style.clipPath = `inset(0 ${100 - split.value}% 0 0)`;
    $(".divider", card).style.left = `${split.value}%`;
  };
  split.oninput = setSplit;
  setSplit();
  $(".zoom", card).onchange = () => zoomTo(card, job);
  zoomTo(card, job);
  const routing = job.routing.length
    ? job.routing.map((r) => `RG${r.group}: rank ${r.ranks.join("+")}`).join(" · ")
    : "not recorded on this backend";
  const precision = job.precision_note ? `${job.precision} (${job.precision_note})` : job.precision;
  facts($(".facts", card), [
    ["Input", `${job.width} × ${job.height}`],
    ["Output", `${job.out_width} × ${job.out_height} (x${job.scale}), ${(job.bytes / 1024).toFixed(0)} kB`],
    ["Time", `${job.seconds.toFixed(2)} s on ${job.device}, ${precision}`],
    ["Tiling", job.tile ? `${job.tile} px tiles` : "whole image"],
    ["Model", job.model],
    ...(job.denoise ? [["Denoise", job.denoise]] : []),
    ["Experts chosen (RME)", routing],
  ]);
}

function follow(card, id) {
  const events = new EventSource(`/api/jobs/${id}/events`);
  active.set(id, events);
  events.onmessage = (e) => {
    const job = JSON.parse(e.data);
    showState(card, job);
    if (["done", "failed", "cancelled"].includes(job.state)) {
      events.close();
      active.delete(id);
    }
  };
}

async function upload(file) {
  const card = $("#job-template").content.firstElementChild.cloneNode(true);
  $(".name", card).textContent = file.name;
  $(".state .text", card).textContent = "uploading";
  $("#jobs").prepend(card);
  const query = new URLSearchParams({
    name: file.name,
    model: $("#model").value,
    precision: $("#precision").value,
    tile: $("#tile").value,
    format: $("#format").value,
    denoise: $("#denoise-controls").hidden ? "" : $("#denoise-auto").checked ? "auto" : ($("#denoise").value / 100).toFixed(1),
  });
  let id = null;
  $(".remove", card).onclick = () => {
    if (id && active.has(id)) {
      fetch(`/api/jobs/${id}/cancel`, { method: "POST" });
    } else {
      if (id) fetch(`/api/jobs/${id}`, { method: "DELETE" });
      card.remove();
    }
  };
  let response;
  try {
    response = await fetch(`/api/jobs?${query}`, { method: "POST", body: file });
  } catch (err) {
    showState(card, { state: "failed", error: `upload failed (${err})` });
    return;
  }
  const body = await response.json();
  if (!response.ok) {
    showState(card, { state: "failed", error: body.error });
    return;
  }
  id = body.id;
  card.dataset.job = id;
  showState(card, body);
  follow(card, id);
}

function take(files) {
  $("#message").textContent = "";
  for (const f of files) upload(f);
}

const drop = $("#drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  take(e.dataTransfer.files);
});
$("#files").addEventListener("change", (e) => {
  take(e.target.files);
  e.target.value = "";
});
// A closed tab cancels its jobs at once (the server would also notice the dropped streams).
window.addEventListener("pagehide", () => {
  for (const id of active.keys()) navigator.sendBeacon(`/api/jobs/${id}/cancel`);
});

init().catch((err) => {
  $("#message").textContent = `cannot reach the server (${err})`;
});
