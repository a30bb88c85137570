// Score raw rows with a shoal raw export (model.raw.onnx) from Node.js, with onnxruntime-node: no shoal, no Python.
//
//   npm install onnxruntime-node
//   node raw_predict.cjs bundle/onnx/model.raw.onnx bundle/onnx/raw_inputs.json rows.json
//
// rows.json: a JSON list of row objects keyed by column name, e.g. [{"review": "great film", "user": "u42",
// "price": 3.5}]; null or a missing key is a missing value. Prints {"probabilities": [...], "dims": [...]}.
// The caller's part of the contract (raw_inputs.json) is what every language does: UTF-8 bytes and their lengths,
// trimming ids, splitting lists on their separator, NaN for a missing number. tests/export/test_raw_node.py runs it.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

const utf8 = new TextEncoder();

// byte strings -> uint8 (n, width) zero-padded; width null: the longest (at least 1)
function bytesTensor(list, width) {
  const w = width ?? Math.max(1, ...list.map((b) => b.length));
  const data = new Uint8Array(list.length * w);
  list.forEach((b, i) => data.set(b.subarray(0, w), i * w));
  return new ort.Tensor('uint8', data, [list.length, w]);
}

const int64Tensor = (xs) => new ort.Tensor('int64', BigInt64Array.from(xs, (x) => BigInt(x)), [xs.length]);

function feeds(contract, rows) {
  const out = {};
  for (const f of contract.features) {
    const cells = rows.map((r) => r[f.column] ?? null);
    const names = f.inputs;
    if (f.kind === 'dense') {  // float32, NaN for missing
      out[names.value] = new ort.Tensor('float32', Float32Array.from(cells, (v) => (v === null ? NaN : Number(v))),
        [rows.length]);
    } else if (f.kind === 'sparse') {  // ids trimmed; a list split on the separator, empty ids dropped
      const ids = [];
      const counts = [];
      for (const c of cells) {
        const text = c === null ? '' : String(c);
        if (f.separator === null) {
          ids.push(text.trim());
        } else {
          const kept = text.split(f.separator).map((s) => s.trim()).filter((s) => s !== '');
          ids.push(...kept);
          counts.push(kept.length);
        }
      }
      const encoded = ids.map((s) => utf8.encode(s));
      const longest = Math.max(0, ...encoded.map((b) => b.length));
      if (contract.max_bytes !== null && longest > contract.max_bytes) {
        throw new Error(`an id of ${f.name} is ${longest} bytes long; the export reads at most ${contract.max_bytes}`);
      }
      out[names.bytes] = bytesTensor(encoded, contract.max_bytes);
      out[names.lengths] = int64Tensor(encoded.map((b) => b.length));  // 0: missing
      if (f.separator !== null) out[names.counts] = int64Tensor(counts);
    } else if (f.kind === 'text') {  // the text's UTF-8 bytes as they are, cut to max_bytes (the graph would cut)
      const encoded = cells.map((c) => utf8.encode(c === null ? '' : String(c)).subarray(0, f.max_bytes));
      out[names.bytes] = bytesTensor(encoded, null);
      out[names.lengths] = int64Tensor(encoded.map((b) => b.length));  // 0: empty or missing
    } else {
      throw new Error(`feature ${f.name}: kind ${f.kind} is not known to this program`);
    }
  }
  return out;
}

async function main() {
  const [modelPath, contractPath, rowsPath] = process.argv.slice(2);
  const contract = JSON.parse(fs.readFileSync(contractPath, 'utf8'));
  const rows = JSON.parse(fs.readFileSync(rowsPath, 'utf8'));
  const options = { intraOpNumThreads: 1, interOpNumThreads: 1 };
  const session = await ort.InferenceSession.create(modelPath, options);
  const result = await session.run(feeds(contract, rows), ['probabilities']);
  const p = result.probabilities;
  console.log(JSON.stringify({ probabilities: Array.from(p.data), dims: p.dims }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
