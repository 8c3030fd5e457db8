// Golden outputs of face-api's FaceExpressionNet, computed by face-api's own code on TF.js (pure-JS CPU).
//
// Source: face-api.js by Vincent Mühler (MIT), as packaged in @vladmandic/face-api 1.7.15 (MIT).
// Driven by scripts/faceapi_golden.py, which installs what this needs into a cache folder (never into
// the repository) and writes the inputs:
//
//   npm install --prefix <PREFIX> --ignore-scripts @tensorflow/tfjs@4.22.0 \
//       @tensorflow/tfjs-node@npm:@tensorflow/tfjs@4.22.0 @vladmandic/face-api@1.7.15
//
// face-api's Node build (dist/face-api.node.js) does require("@tensorflow/tfjs-node"), the native
// TensorFlow binding; that name is installed as an npm alias of the pure-JS @tensorflow/tfjs, so
// face-api's own code runs on the JavaScript CPU backend and nothing outside the npm registry is needed.
//
// Usage: node faceapi_golden.mjs --prefix PREFIX --manifest M.json --bin M.bin --inputs DIR --out OUT.json
// DIR/inputs.json lists items {id, height, width, crop: "<id>.crop.u8", input: "<id>.input.f32"}:
// the crop is the face as uint8 RGB (height, width, 3); the input is the Python side's preprocessed
// array, float32 (112, 112, 3). For each item we write:
//   probabilities            face-api's whole pipeline on the crop: predictExpressions' numbers
//                            (pad to square, resize 112, (x - mean) / 255, network, softmax);
//   logits                   the same before the softmax (FaceProcessor.runNet);
//   preprocessed (file)      face-api's preprocessed batch tensor (1, 112, 112, 3) as float32, "<id>.faceapi.f32";
//   probabilities_from_input the network as face-api's dist code wires it (denseBlock4 x4, avgPool, fc,
//                            softmax), with face-api's loaded parameters, on the Python side's input;
//   wiring_check_max_abs     that wiring vs face-api's own forward on face-api's preprocessed tensor.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const MEAN_RGB = [122.782, 117.001, 104.298]; // FaceFeatureExtractor.forwardInput in the dist code

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const key of ['prefix', 'manifest', 'bin', 'inputs', 'out']) {
    if (!args[key]) throw new Error(`missing --${key}`);
  }
  return args;
}

function readTyped(file, Type) {
  const bytes = fs.readFileSync(file);
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes); // a fresh, aligned ArrayBuffer
  return new Type(copy.buffer);
}

// face-api's denseBlock4 and depthwiseSeparableConv (src/faceFeatureExtractor/denseBlock.ts), verbatim in tfjs ops.
function sepConv(tf, x, p, stride) {
  return tf.add(tf.separableConv2d(x, p.depthwise_filter, p.pointwise_filter, stride, 'same'), p.bias);
}

function denseBlock4(tf, x, p, isFirstLayer) {
  const out1 = tf.relu(isFirstLayer
    ? tf.add(tf.conv2d(x, p.conv0.filters, [2, 2], 'same'), p.conv0.bias)
    : sepConv(tf, x, p.conv0, [2, 2]));
  const out2 = sepConv(tf, out1, p.conv1, [1, 1]);
  const in3 = tf.relu(tf.add(out1, out2));
  const out3 = sepConv(tf, in3, p.conv2, [1, 1]);
  const in4 = tf.relu(tf.add(out1, tf.add(out2, out3)));
  const out4 = sepConv(tf, in4, p.conv3, [1, 1]);
  return tf.relu(tf.add(out1, tf.add(out2, tf.add(out3, out4))));
}

function wiredNetwork(tf, net, normalized) {
  return tf.tidy(() => {
    const p = net.faceFeatureExtractor.params;
    let out = denseBlock4(tf, normalized, p.dense0, true);
    out = denseBlock4(tf, out, p.dense1, false);
    out = denseBlock4(tf, out, p.dense2, false);
    out = denseBlock4(tf, out, p.dense3, false);
    out = tf.avgPool(out, [7, 7], [2, 2], 'valid');
    const fc = net.params.fc;
    return tf.softmax(tf.add(tf.matMul(out.as2D(out.shape[0], -1), fc.weights), fc.bias));
  });
}

function maxAbs(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i += 1) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function runItem(tf, faceapi, net, dir, item) {
  const crop = readTyped(path.join(dir, item.crop), Uint8Array);
  const image = tf.tensor3d(Int32Array.from(crop), [item.height, item.width, 3], 'int32');
  const netInput = await faceapi.toNetInput(image);
  const probabilities = Array.from(await net.forwardInput(netInput).data());
  const logits = Array.from(await net.runNet(netInput).data()); // the same, before softmax
  const pre = tf.tidy(() => faceapi.normalize(netInput.toBatchTensor(112, true), MEAN_RGB).div(255));
  const preData = await pre.data();
  fs.writeFileSync(path.join(dir, `${item.id}.faceapi.f32`), Buffer.from(preData.buffer, preData.byteOffset, preData.byteLength));
  const wiring = Array.from(await wiredNetwork(tf, net, pre).data());
  const input = tf.tensor4d(readTyped(path.join(dir, item.input), Float32Array), [1, 112, 112, 3]);
  const fromInput = Array.from(await wiredNetwork(tf, net, input).data());
  return {
    id: item.id,
    probabilities,
    logits,
    probabilities_from_input: fromInput,
    preprocessed: `${item.id}.faceapi.f32`,
    wiring_check_max_abs: maxAbs(wiring, probabilities),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const require = createRequire(path.join(path.resolve(args.prefix), 'package.json'));
  const faceapi = require('@vladmandic/face-api');
  const { tf } = faceapi;
  await tf.setBackend('cpu');
  await tf.ready();
  const manifest = JSON.parse(fs.readFileSync(args.manifest, 'utf8'));
  const specs = manifest.flatMap((group) => group.weights);
  const bin = fs.readFileSync(args.bin);
  const weightMap = tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength), specs);
  const net = new faceapi.FaceExpressionNet();
  net.loadFromWeightMap(weightMap);
  const { items } = JSON.parse(fs.readFileSync(path.join(args.inputs, 'inputs.json'), 'utf8'));
  const results = [];
  for (const item of items) results.push(await runItem(tf, faceapi, net, args.inputs, item));
  const out = {
    tfjs_version: tf.version.tfjs,
    tfjs_core_version: tf.version['tfjs-core'],
    tfjs_backend: tf.getBackend(),
    faceapi_version: faceapi.version,
    node_version: process.version,
    classes: faceapi.FACE_EXPRESSION_LABELS,
    results,
  };
  fs.writeFileSync(args.out, `${JSON.stringify(out, null, 1)}\n`);
}

main().catch((err) => {
  console.error(err.stack || String(err));
  process.exit(1);
});
