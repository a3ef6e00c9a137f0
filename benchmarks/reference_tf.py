"""The SLM-CNN reference pipeline re-created in TensorFlow/Keras, for timing only.

Runs inside .venv-tf (made by bench_predict.py). Same network as slmcnn; per layer: cv2 read, a
Python loop copying tiles, per-image standardisation, `model.predict`, a Python loop painting the
colour map, `cv2.addWeighted` overlay: the reference's structure. Also times training steps and
Integrated Gradients as the TensorFlow tutorial the reference follows does it (alphas in batches of
32, trapezoid rule), with slmcnn's trained weights when --weights is given, so that convergence
deltas compare. Prints one JSON object.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import layers  # noqa: E402

PATCH = 128
COLOURS = np.array([[255, 255, 255], [255, 0, 0], [0, 0, 255]], np.uint8)  # BGR: white, blue, red


def build_model() -> keras.Model:
    inputs = keras.Input((PATCH, PATCH, 3))
    x = inputs
    for filters, drop in zip((32, 64, 128, 256, 256), (0, 0.1, 0.2, 0.3, 0.3)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D()(x)
        if drop:
            x = layers.Dropout(drop)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def predict_layer(model, path: str, out_path: str) -> None:
    image = cv2.imread(path)
    h, w = image.shape[:2]
    rows, cols = h // PATCH, w // PATCH
    tiles = []
    for r in range(rows):
        for c in range(cols):
            tiles.append(image[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH].copy())
    batch = tf.image.per_image_standardization(np.array(tiles, np.float32) / 255.0)
    classes = np.argmax(model.predict(batch, verbose=0), axis=1)
    colour = np.zeros_like(image)
    i = 0
    for r in range(rows):
        for c in range(cols):
            colour[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = COLOURS[classes[i]]
            i += 1
    cv2.imwrite(out_path, cv2.addWeighted(image, 0.8, colour, 0.2, 0))


def integrated_gradients(model, image, steps: int, target: int) -> tuple[np.ndarray, float]:
    baseline = tf.zeros_like(image)
    alphas = tf.linspace(0.0, 1.0, steps + 1)
    grads = []
    for start in range(0, steps + 1, 32):
        a = alphas[start : start + 32][:, None, None, None]
        path = baseline[None] + a * (image - baseline)[None]
        with tf.GradientTape() as tape:
            tape.watch(path)
            probs = model(path, training=False)[:, target]
        grads.append(tape.gradient(probs, path))
    grads = tf.concat(grads, 0)
    avg = tf.reduce_mean((grads[:-1] + grads[1:]) / 2.0, axis=0)
    attribution = (image - baseline) * avg
    out = model(tf.stack([baseline, image]), training=False)[:, target]
    delta = float(tf.reduce_sum(attribution) - (out[1] - out[0]))
    return attribution.numpy(), delta


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("layer_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--weights", help=".npz of Keras-ordered weights (slmcnn's model); default: untrained")
    parser.add_argument("--patches", help=".npy of uint8 patches to explain; default: one random patch")
    parser.add_argument("--attributions", help="write the 500-step attributions here (.npy, patches x H x W x 3)")
    parser.add_argument(
        "--predict-only", action="store_true", help="classify and write the overlays only (whole-process timing)"
    )
    args = parser.parse_args()
    paths = sorted(
        os.path.join(args.layer_dir, p) for p in os.listdir(args.layer_dir) if p.endswith((".png", ".jpg", ".jpeg"))
    )
    os.makedirs(args.out_dir, exist_ok=True)
    model = build_model()
    if args.weights:
        stored = np.load(args.weights)
        model.set_weights([stored[f"w{i}"] for i in range(len(stored.files))])
    if not args.predict_only:
        predict_layer(model, paths[0], os.path.join(args.out_dir, "warmup.png"))
    start = time.perf_counter()
    for i, path in enumerate(paths):
        predict_layer(model, path, os.path.join(args.out_dir, f"{i:05d}.png"))
    layers_per_s = len(paths) / (time.perf_counter() - start)
    if args.predict_only:
        return

    rng = np.random.default_rng(0)
    if args.patches:
        patches = np.load(args.patches)
    else:
        patches = rng.integers(0, 255, (1, PATCH, PATCH, 3)).astype(np.uint8)
    explained = tf.image.per_image_standardization(patches.astype(np.float32) / 255.0)
    targets = np.argmax(model.predict(explained, verbose=0), axis=1)
    ig = {}
    for steps in (50, 500):
        integrated_gradients(model, explained[0], steps, int(targets[0]))
        chosen = range(len(patches))
        start = time.perf_counter()
        results = [integrated_gradients(model, explained[i], steps, int(targets[i])) for i in chosen]
        ig[steps] = ((time.perf_counter() - start) / len(chosen), float(np.mean([abs(d) for _, d in results])))
        if steps == 500 and args.attributions:
            np.save(args.attributions, np.stack([a for a, _ in results]))

    # training last: it changes the weights
    x = tf.image.per_image_standardization(rng.integers(0, 255, (64 * 12, PATCH, PATCH, 3)).astype(np.float32) / 255.0)
    y = rng.integers(0, 3, 64 * 12)
    model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    train_patches_per_s = len(y) / (time.perf_counter() - start)
    print(
        json.dumps(
            {
                "tf_version": tf.__version__,
                "tf_weights": "slmcnn" if args.weights else "untrained",
                "tf_layers_per_s": layers_per_s,
                "tf_train_patches_per_s": train_patches_per_s,
                "tf_ig_50_steps_s_per_patch": ig[50][0],
                "tf_ig_50_steps_delta": ig[50][1],
                "tf_ig_500_steps_s_per_patch": ig[500][0],
                "tf_ig_500_steps_delta": ig[500][1],
            }
        )
    )


if __name__ == "__main__":
    main()
