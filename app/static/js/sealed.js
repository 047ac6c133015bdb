// The formats of docs/formats.md, read in the browser: the wallet-derived X25519 key and the
// HPKE-wrapped content key (§4), the MDXSEAL1 sealed archive (§3), the deterministic tar inside
// it (§3) and the model hash (§2). node/content/ is the reference implementation; these
// functions refuse what it refuses, with a sentence, as a Refused error.
//
// Kept libraries only, bundled from package-lock by tools/setup.sh (esbuild): @hpke/core with
// @hpke/dhkem-x25519 (RFC 9180), @noble/curves (X25519), @noble/hashes (HKDF, streaming
// SHA-256: pure JS, so the page's CSP needs no 'wasm-unsafe-eval'). AES-GCM is WebCrypto's.
import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

export class Refused extends Error {}

export const utf8 = (text) => new TextEncoder().encode(text);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
export function hexBytes(text) {
  const digits = String(text).replace(/^0x/i, "");
  if (digits.length % 2 || /[^0-9a-fA-F]/.test(digits)) throw new Refused(`${text} is not hex`);
  return Uint8Array.from(digits.match(/../g) || [], (h) => parseInt(h, 16));
}
function bigEndian(value, size) {
  let n = BigInt(value);
  const out = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--, n >>= 8n) out[i] = Number(n & 0xffn);
  if (n !== 0n || BigInt(value) < 0n) throw new Refused(`${value} does not fit in ${size} bytes`);
  return out;
}
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

// ---- §4: the wallet-derived X25519 key and the wrapped content key ----

// sk = HKDF-SHA256(ikm = the 65-byte personal_sign signature, salt = "", info = "modex/v1/x25519");
// X25519 clamps it. The signature is the seed of the secret: it must never leave the page.
export function x25519FromSignature(signatureHex) {
  const signature = hexBytes(signatureHex);
  if (signature.length !== 65) {
    throw new Refused("The wallet returned no 65-byte signature: sign the message again.");
  }
  const secret = hkdf(sha256, signature, new Uint8Array(0), utf8("modex/v1/x25519"), 32);
  return { secret, publicKey: x25519.getPublicKey(secret) };
}

// info = "modex/v1/key" || u64be(chainId) || marketplace (20 bytes) || u256be(purchaseId)
export function keyInfo(chainId, marketplace, purchaseId) {
  const address = hexBytes(marketplace);
  if (address.length !== 20) throw new Refused(`marketplace ${marketplace} is not a 20-byte address`);
  return concat(utf8("modex/v1/key"), bigEndian(chainId, 8), address, bigEndian(purchaseId, 32));
}

// RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM: the suite of every
// Modex wrapping (docs/formats.md §4, §10).
export const hpkeSuite = () =>
  new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });

// The 80-byte wire form is enc (32) || ciphertext with tag (48). Returns the 32-byte content key.
export async function unwrapContentKey(wrappedHex, secret, { chainId, marketplace, purchaseId }) {
  const wrapped = hexBytes(wrappedHex);
  if (wrapped.length !== 80) throw new Refused(`The wrapped key has ${wrapped.length} bytes, not 80.`);
  const suite = hpkeSuite();
  let key;
  try {
    const recipientKey = await suite.kem.deserializePrivateKey(secret);
    const context = await suite.createRecipientContext({
      recipientKey, enc: wrapped.slice(0, 32), info: keyInfo(chainId, marketplace, purchaseId),
    });
    key = new Uint8Array(await context.open(wrapped.slice(32)));
  } catch (e) {
    throw new Refused("Cannot unwrap the content key: it was wrapped to another wallet's key (or " +
                      "for another purchase, chain or marketplace), or it is corrupt.");
  }
  if (key.length !== 32) throw new Refused(`The unwrapped key has ${key.length} bytes, not 32.`);
  return key;
}

// ---- reading a stream in exact pieces ----

// Bytes from an iterator of Uint8Arrays ({next()} as a stream reader or an async generator has),
// handed out in pieces; `offset` counts the bytes handed out.
export class ByteQueue {
  constructor(iterator) {
    this.iterator = iterator;
    this.chunk = new Uint8Array(0);
    this.pos = 0;
    this.ended = false;
    this.offset = 0;
  }
  async some(max) { // 1..max bytes (none only at the end): a view, valid until the next call
    while (this.pos === this.chunk.length && !this.ended) {
      const { value, done } = await this.iterator.next();
      if (done) this.ended = true;
      else { this.chunk = value; this.pos = 0; }
    }
    const n = Math.min(max, this.chunk.length - this.pos);
    const view = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return view;
  }
  async exact(n) { // n bytes in a new array, fewer only where the stream ends
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const piece = await this.some(n - got);
      if (!piece.length) break;
      out.set(piece, got);
      got += piece.length;
    }
    return got === n ? out : out.slice(0, got);
  }
}

// ---- §3: the sealed archive ----

const MAGIC = "MDXSEAL1";
const HEADER_SIZE = 24;
const TAG_SIZE = 16;
const MAX_CHUNK_SIZE = 1 << 26;

export function parseSealHeader(header) {
  if (header.length < HEADER_SIZE) {
    throw new Refused(`The sealed archive is truncated: it ends inside its ${HEADER_SIZE}-byte header.`);
  }
  if (new TextDecoder("latin1").decode(header.subarray(0, 8)) !== MAGIC) {
    throw new Refused("This is not a Modex sealed archive (bad magic; expected MDXSEAL1).");
  }
  if (header.subarray(19, 24).some((b) => b !== 0)) {
    throw new Refused("The sealed archive's header has non-zero reserved bytes (an unknown version).");
  }
  const chunkSize = new DataView(header.buffer, header.byteOffset).getUint32(8);
  if (chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
    throw new Refused(`The sealed archive declares chunk size ${chunkSize}, outside 1..${MAX_CHUNK_SIZE}.`);
  }
  return { chunkSize, prefix: header.slice(12, 19) };
}

// The authenticated plaintext of a sealed archive, chunk by chunk. A chunk is final when nothing
// follows it, so each chunk is read one ahead; a chunk is yielded only once its tag checks out,
// and a stream cut at a chunk boundary, or extended, fails the tag of what became its last chunk.
export async function* unseal(iterator, key, onSealedBytes = () => {}) {
  const source = new ByteQueue(iterator);
  const header = await source.exact(HEADER_SIZE);
  const { chunkSize, prefix } = parseSealHeader(header);
  const aes = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
  const record = chunkSize + TAG_SIZE;
  onSealedBytes(source.offset);
  let current = await source.exact(record);
  for (let index = 0; ; index++) {
    const next = current.length === record ? await source.exact(record) : new Uint8Array(0);
    const final = next.length === 0;
    if (current.length < TAG_SIZE || (final && current.length === TAG_SIZE && index > 0)) {
      throw new Refused(`The sealed archive is truncated at chunk ${index}: the download is incomplete.`);
    }
    if (index >= 2 ** 32) throw new Refused("The sealed archive has more than 2^32 chunks.");
    const nonce = concat(prefix, bigEndian(index, 4), Uint8Array.of(final ? 1 : 0));
    let plain;
    try {
      plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: nonce, additionalData: header, tagLength: 128 }, aes, current);
    } catch (e) {
      throw new Refused(`The sealed archive fails authentication at chunk ${index}: it was ` +
                        "tampered with, truncated, reordered or extended (or the key is wrong).");
    }
    onSealedBytes(source.offset - next.length);
    yield new Uint8Array(plain);
    if (final) return;
    current = next;
  }
}

// ---- §3: the deterministic tar; §2: the manifest and the model hash ----

const BLOCK = 512;
const pad = (n) => (BLOCK - (n % BLOCK)) % BLOCK;
const latin1 = (bytes) => new TextDecoder("latin1").decode(bytes);
const cString = (bytes) => { const nul = bytes.indexOf(0); return nul < 0 ? bytes : bytes.subarray(0, nul); };
const KINDS = { "1": "hard link", "2": "symlink", "3": "character device", "4": "block device", "6": "FIFO" };

function parseOctal(field, what, offset) {
  const text = latin1(field).replace(/[\0 ]+$/, "").replace(/^ +/, "");
  if (!/^[0-7]*$/.test(text)) throw new Refused(`Tar header at byte ${offset}: bad ${what} field.`);
  return text ? parseInt(text, 8) : 0;
}

function checkHeader(block, offset) {
  const stored = parseOctal(block.subarray(148, 156), "checksum", offset);
  let computed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) computed += block[i];
  if (stored !== computed) throw new Refused(`Tar header at byte ${offset}: checksum mismatch (corrupt archive).`);
  if (latin1(block.subarray(257, 262)) !== "ustar") throw new Refused(`Tar header at byte ${offset}: not a POSIX ustar header.`);
}

function parsePax(data, offset) {
  const records = {};
  const malformed = () => new Refused(`Tar pax header at byte ${offset}: malformed record.`);
  for (let pos = 0; pos < data.length;) {
    const space = data.indexOf(0x20, pos);
    const digits = space < 0 ? "" : latin1(data.subarray(pos, space));
    if (!/^[0-9]+$/.test(digits)) throw malformed();
    const length = parseInt(digits, 10);
    const record = data.subarray(space + 1, pos + length);
    const equals = record.indexOf(0x3d);
    if (length <= 0 || pos + length > data.length || record[record.length - 1] !== 0x0a || equals < 0) throw malformed();
    records[latin1(record.subarray(0, equals))] = record.slice(equals + 1, record.length - 1);
    pos += length;
  }
  return records;
}

export function checkRelativePath(path) {
  if (!path || path.includes("\0") || path.startsWith("/")) {
    throw new Refused(`The archive names ${JSON.stringify(path)}: empty, absolute or with NUL: refused.`);
  }
  if (path.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new Refused(`The archive names ${JSON.stringify(path)}, with an empty, '.' or '..' ` +
                      "component (it could escape the folder): refused.");
  }
  return path;
}

function memberName(block, pax) {
  let raw = pax.path;
  if (!raw) {
    const name = cString(block.subarray(0, 100)), prefix = cString(block.subarray(345, 500));
    raw = prefix.length ? concat(prefix, utf8("/"), name) : name;
  }
  let text;
  try { text = new TextDecoder("utf-8", { fatal: true }).decode(raw); } catch (e) {
    throw new Refused("The archive names a file whose name is not UTF-8: refused.");
  }
  if (text.startsWith("./")) text = text.slice(2);
  return checkRelativePath(text.replace(/\/+$/, ""));
}

// Reads the tar from an iterator of plaintext chunks; each regular file's bytes go to
// `openFile(path)`'s writer ({write(bytes)}: awaited) and through SHA-256. Returns the manifest
// entries. Refuses links, devices, FIFOs, GNU extensions, absolute paths, '..', duplicates, a
// file and a folder of the same name, bad checksums, a truncated tar and anything but zeros
// after its end.
export async function readTar(iterator, openFile) {
  const source = new ByteQueue(iterator);
  const files = [], seen = new Set(), folders = new Set();
  const clash = (name) => new Refused(`The archive names ${JSON.stringify(name)} twice (or as a file and a folder): refused.`);
  const underFile = (name) => name.split("/").slice(0, -1).some((_, i, parts) => seen.has(parts.slice(0, i + 1).join("/")));
  let pax = {};
  for (;;) {
    const offset = source.offset;
    const block = await source.exact(BLOCK);
    if (block.length === 0 && offset === 0) throw new Refused("The archive is empty: not a tar.");
    if (block.length !== BLOCK) throw new Refused(`The tar is truncated at byte ${source.offset}: no end-of-archive.`);
    if (block.every((b) => b === 0)) {
      if (Object.keys(pax).length) throw new Refused(`Tar pax header at byte ${offset} has no member.`);
      for (let piece; (piece = await source.some(1 << 20)).length;) {
        if (piece.some((b) => b !== 0)) throw new Refused(`Data after the end of the tar (near byte ${source.offset}): refused.`);
      }
      return files;
    }
    checkHeader(block, offset);
    const typeflag = String.fromCharCode(block[156]);
    let size = parseOctal(block.subarray(124, 136), "size", offset);
    if (typeflag === "x") {
      if (size > 1 << 20) throw new Refused(`Tar pax header at byte ${offset} is too large.`);
      const data = await source.exact(size + pad(size));
      if (data.length !== size + pad(size)) throw new Refused(`The tar is truncated at byte ${source.offset}.`);
      pax = parsePax(data.subarray(0, size), offset);
      continue;
    }
    if (pax.size) {
      const text = latin1(pax.size);
      if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new Refused(`Tar pax size at byte ${offset} is not a number.`);
      size = Number(text);
    }
    const name = memberName(block, pax);
    pax = {};
    if (typeflag === "5") {
      if (seen.has(name) || underFile(name + "/x")) throw clash(name);
      folders.add(name);
      continue;
    }
    if (typeflag !== "0" && typeflag !== "\0") {
      const kind = KINDS[typeflag] || `member of type '${typeflag}'`;
      throw new Refused(`The archive's ${JSON.stringify(name)} is a ${kind}: only regular files are allowed in a model.`);
    }
    if (seen.has(name) || folders.has(name) || underFile(name)) throw clash(name);
    if ([...seen].some((f) => f.startsWith(name + "/"))) throw clash(name);
    seen.add(name);
    const writer = await openFile(name);
    const hash = sha256.create();
    for (let left = size; left > 0;) {
      const piece = await source.some(Math.min(left, 1 << 20));
      if (!piece.length) throw new Refused(`The tar is truncated inside ${JSON.stringify(name)}: the archive is incomplete.`);
      hash.update(piece);
      await writer.write(piece);
      left -= piece.length;
    }
    const padding = await source.exact(pad(size));
    if (padding.length !== pad(size)) throw new Refused(`The tar is truncated after ${JSON.stringify(name)}.`);
    files.push({ path: name, size, sha256: hex(hash.digest()) });
  }
}

// §1 canonical JSON of the manifest: sorted keys, no spaces, every character outside ' '..'~'
// escaped as \uXXXX (lower-case), as Python's json.dumps(sort_keys=True, separators=(",", ":")).
export const pyString = (s) => JSON.stringify(s).replace(/[\u007f-\uffff]/g,
  (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function canonicalManifest(files) {
  const sorted = [...files].sort((a, b) => compareBytes(utf8(a.path), utf8(b.path)));
  const entries = sorted.map((f) => `{"path":${pyString(f.path)},"sha256":${pyString(f.sha256)},"size":${f.size}}`);
  return `{"files":[${entries.join(",")}],"version":1}`;
}

export function modelHash(files) {
  return "0x" + hex(sha256(utf8(canonicalManifest(files))));
}

// The whole check: sealed bytes → files handed to openFile → the manifest's model hash must be
// `expectedHash` (the on-chain one). The caller keeps the files only when this resolves.
export async function openModel(iterator, key, expectedHash, openFile, onSealedBytes) {
  const files = await readTar(unseal(iterator, key, onSealedBytes), openFile);
  const got = modelHash(files);
  if (got !== String(expectedHash).toLowerCase()) {
    throw new Refused(`The files' model hash ${got} is not the on-chain model hash ${expectedHash}: ` +
                      "these are not the bytes that were listed.");
  }
  return files;
}
