// Run an original TF.js graph model (MoveNet SinglePose) on raw RGB crops and print its raw outputs.
//
// Usage:
//   node reference.mjs MODEL_JSON SIZE OUT_JSON CROP.rgb [CROP.rgb ...]
//
// MODEL_JSON  a graph-model model.json (e.g. .../package/models/movenet-thunder.json); its weight
//             shards are read from the same folder.
// SIZE        crop side in pixels (256 for thunder, 192 for lightning).
// CROP.rgb    raw interleaved RGB uint8, SIZE*SIZE*3 bytes, row-major (written by make_fixture.py).
// OUT_JSON    written as {"tfjs": VERSION, "backend": "cpu", "model": MODEL_JSON basename,
//             "outputs": [[[y, x, score] x17] per crop]} -- the model's raw Identity:0 values as
//             float32 turned to JS numbers (exact, no rounding).
//
// Pure-JS packages only (tfjs-core + tfjs-converter + tfjs-backend-cpu), so no native binary is needed.

import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadGraphModel } from '@tensorflow/tfjs-converter';

function localHandler(modelJsonPath) {
  return {
    async load() {
      const modelJson = JSON.parse(fs.readFileSync(modelJsonPath, 'utf8'));
      const dir = path.dirname(modelJsonPath);
      const weightSpecs = [];
      const buffers = [];
      for (const group of modelJson.weightsManifest) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return {
        modelTopology: modelJson.modelTopology,
        format: modelJson.format,
        generatedBy: modelJson.generatedBy,
        convertedBy: modelJson.convertedBy,
        signature: modelJson.signature,
        userDefinedMetadata: modelJson.userDefinedMetadata,
        weightSpecs,
        weightData,
      };
    },
  };
}

async function main() {
  const [modelJsonPath, sizeArg, outPath, ...crops] = process.argv.slice(2);
  if (!modelJsonPath || !sizeArg || !outPath || crops.length === 0) {
    console.error('usage: node reference.mjs MODEL_JSON SIZE OUT_JSON CROP.rgb [CROP.rgb ...]');
    process.exit(2);
  }
  const size = Number.parseInt(sizeArg, 10);
  if (!(await tf.setBackend('cpu'))) throw new Error('could not set the cpu backend');
  await tf.ready();

  const model = await loadGraphModel(localHandler(modelJsonPath));
  const outputs = [];
  for (const crop of crops) {
    const bytes = fs.readFileSync(crop);
    if (bytes.length !== size * size * 3) {
      throw new Error(`${crop}: ${bytes.length} bytes, expected ${size}x${size}x3=${size * size * 3}`);
    }
    const kp = tf.tidy(() => {
      const input = tf.tensor4d(Int32Array.from(bytes), [1, size, size, 3], 'int32');
      const out = model.execute(input);
      return tf.reshape(out, [17, 3]);
    });
    outputs.push(await kp.array());
    kp.dispose();
  }
  model.dispose();
  const result = {
    tfjs: tf.version_core,
    backend: tf.getBackend(),
    model: path.basename(modelJsonPath),
    outputs,
  };
  fs.writeFileSync(outPath, JSON.stringify(result));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
