// The frontend's flow against our API and chain, in plain browser JavaScript (no bundler):
// connect an injected wallet, check its chain, sign a bound prompt update, link X with the
// frontend's message (the browser goes to X and comes back through this origin), and read
// tokens the way wagmi does, all calls in one Multicall3 aggregate3.
"use strict";

const $ = (id) => document.getElementById(id);
let config = null;
let account = null;

function say(id, text, ok) {
  $(id).textContent = text;
  $(id).className = ok ? "ok" : "bad";
}

function utf8Hex(text) {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status}: ${body.detail || JSON.stringify(body)}`);
  return body;
}

async function connect() {
  try {
    [account] = await window.ethereum.request({ method: "eth_requestAccounts" });
    const chainId = parseInt(await window.ethereum.request({ method: "eth_chainId" }), 16);
    if (chainId !== config.chain_id) {
      say("wallet", `wrong network: the wallet is on chain ${chainId}, GLISK runs on ${config.chain_id}`, false);
      return;
    }
    say("wallet", `${account} on chain ${chainId}`, true);
  } catch (error) {
    say("wallet", `connect failed: ${error.message}`, false);
  }
}

async function savePrompt() {
  try {
    const prompt = $("prompt").value;
    const nonce = await api(`/api/authors/${account}/nonce`);
    if (nonce.chain_id !== config.chain_id) throw new Error(`the API signs for chain ${nonce.chain_id}`);
    const message = nonce.message_template.replace("{prompt_sha256}", await sha256Hex(prompt));
    const signature = await window.ethereum.request({ method: "personal_sign", params: [utf8Hex(message), account] });
    await api("/api/authors/prompt", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ wallet_address: account, prompt_text: prompt, message, signature }),
    });
    say("saved", "prompt saved (bound message)", true);
  } catch (error) {
    say("saved", `save failed: ${error.message}`, false);
  }
}

async function linkX() {
  try {
    const message = `Link X account for wallet: ${account}`; // the frontend's message
    const signature = await window.ethereum.request({ method: "personal_sign", params: [utf8Hex(message), account] });
    const started = await api("/api/authors/x/auth/start", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ wallet_address: account, message, signature }),
    });
    window.location.href = started.authorization_url; // X, then our callback, then /profile here
  } catch (error) {
    say("x", `link failed: ${error.message}`, false);
  }
}

// --- ABI, by hand: aggregate3((address target, bool allowFailure, bytes callData)[]) ----------
const word = (n) => BigInt(n).toString(16).padStart(64, "0");
const strip = (hex) => hex.replace(/^0x/, "");

function encodeAggregate3(calls) {
  const tuples = calls.map(({ target, data }) => {
    const bytes = strip(data);
    const padded = bytes.padEnd(Math.ceil(bytes.length / 64) * 64, "0");
    return word(BigInt("0x" + strip(target))) + word(1) + word(96) + word(bytes.length / 2) + padded;
  });
  let offsets = "";
  let at = calls.length * 32;
  for (const tuple of tuples) {
    offsets += word(at);
    at += tuple.length / 2;
  }
  return config.selectors.aggregate3 + word(32) + word(calls.length) + offsets + tuples.join("");
}

function decodeAggregate3(hex) {
  const data = strip(hex);
  const at = (byte) => Number(BigInt("0x" + data.slice(byte * 2, byte * 2 + 64)));
  const start = at(0) + 32;
  const count = at(at(0));
  const results = [];
  for (let i = 0; i < count; i++) {
    const tuple = start + at(start + i * 32);
    const bytesAt = tuple + at(tuple + 32);
    const length = at(bytesAt);
    results.push({ success: at(tuple) === 1, data: data.slice((bytesAt + 32) * 2, (bytesAt + 32 + length) * 2) });
  }
  return results;
}

function decodeString(data) {
  const length = Number(BigInt("0x" + data.slice(64, 128)));
  const bytes = data.slice(128, 128 + length * 2).match(/../g) || [];
  return new TextDecoder().decode(new Uint8Array(bytes.map((b) => parseInt(b, 16))));
}

async function loadTokens() {
  const list = $("token-list");
  list.textContent = "";
  const ids = $("token-ids").value.split(",").map((s) => BigInt(s.trim()));
  const calls = ids.flatMap((id) => [
    { target: config.contract, data: config.selectors.tokenURI + word(id) },
    { target: config.contract, data: config.selectors.tokenPromptAuthor + word(id) },
  ]);
  let results = [];
  try {
    const answer = await window.ethereum.request({
      method: "eth_call",
      params: [{ to: config.multicall3, data: encodeAggregate3(calls) }, "latest"],
    });
    results = decodeAggregate3(answer);
    if (results.length !== calls.length) throw new Error(`Multicall3 answered ${answer.slice(0, 20)}…`);
  } catch (error) {
    results = [];
    console.error("multicall failed", error);
  }
  ids.forEach((id, n) => {
    const item = document.createElement("li");
    const [uri, author] = [results[2 * n], results[2 * n + 1]];
    if (!uri || !uri.success || !author || !author.success) {
      item.textContent = `Failed to load NFT #${id}`;
      item.className = "bad";
    } else {
      item.textContent = `#${id} ${decodeString(uri.data)} by 0x${author.data.slice(24, 64)}`;
      item.className = "ok token";
    }
    list.appendChild(item);
  });
}

async function main() {
  config = await (await fetch("/config.json")).json();
  $("want-chain").textContent = String(config.chain_id);
  $("contract").textContent = config.contract;
  $("connect").onclick = connect;
  $("save").onclick = savePrompt;
  $("link-x").onclick = linkX;
  $("tokens").onclick = loadTokens;
  const back = new URLSearchParams(window.location.search);
  if (back.has("x_linked")) {
    const linked = back.get("x_linked") === "true";
    say("x", linked ? `X linked: @${back.get("username")}` : `X not linked: ${back.get("error")}`, linked);
  }
  document.body.dataset.ready = "true";
}

main();
