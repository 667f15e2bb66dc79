#!/usr/bin/python3
"""Exports the real-model test set to models/ as ONNX, with a seeded input and PyTorch's output.

For each model NAME this writes
  models/NAME.onnx           the graph (opset 14, constant folding on, output named `output`)
  models/NAME.input.npy      a seeded input (int64 token ids for bert_base)
  models/NAME.torch_out.npy  what PyTorch itself computes for that input (the reference)

Weights are random but seeded (torch.manual_seed), so nothing is downloaded and every machine
produces the same files. Models already present are skipped unless --force is given.

  /usr/bin/python3 scripts/export_models.py [--force] [--only NAME[,NAME]] [--out DIR]
"""
import argparse
import os
import sys
import time

import warnings

import numpy as np
import torch
import torch.nn as nn

OPSET = 14
warnings.filterwarnings("ignore", category=UserWarning)  # the exporter is chatty about shape inference
SEED = 1234


class SmallCNN(nn.Module):
    """A tiny conv/bn/relu/pool/linear net: quick to run, covers the common CNN ops."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class BertBase(nn.Module):
    """A BERT-base-shaped encoder: token + learned position embeddings, 12 post-norm layers
    (d_model 768, 12 heads, ffn 3072, GELU), a final LayerNorm and a tanh pooler on token 0."""

    def __init__(self, vocab=30522, seq=128, d=768, heads=12, ffn=3072, layers=12):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.1, activation="gelu", batch_first=True)
        # enable_nested_tensor=False: the nested-tensor fast path has no ONNX form.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.pooler = nn.Linear(d, d)

    def forward(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        h = self.tok(input_ids) + self.pos(positions)
        h = self.norm(self.encoder(h))
        return torch.tanh(self.pooler(h[:, 0]))


class LSTMNet(nn.Module):
    """2-layer LSTM (input 128, hidden 256) over [seq, batch, feature], then Linear(256, 10) per step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(128, 256, num_layers=2)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.fc(y)


def build(name):
    """Returns (module, input name, input tensor)."""
    g = torch.Generator().manual_seed(SEED + 1)
    if name == "resnet50":
        import torchvision
        return torchvision.models.resnet50(weights=None), "input", torch.randn(1, 3, 224, 224, generator=g)
    if name == "mobilenet_v2":
        import torchvision
        return torchvision.models.mobilenet_v2(weights=None), "input", torch.randn(1, 3, 224, 224, generator=g)
    if name == "bert_base":
        return BertBase(), "input_ids", torch.randint(0, 30522, (1, 128), generator=g, dtype=torch.int64)
    if name == "distilbert":
        # DistilBERT's shape (6 layers of BERT-base width) for the calibration point of Apple's
        # ml-ane-transformers (DistilBERT, seq 128, A15); not part of the default set.
        return BertBase(layers=6), "input_ids", torch.randint(0, 30522, (1, 128), generator=g, dtype=torch.int64)
    if name == "lstm":
        return LSTMNet(), "x", torch.randn(100, 1, 128, generator=g)
    if name == "small_cnn":
        return SmallCNN(), "input", torch.randn(1, 3, 32, 32, generator=g)
    raise SystemExit(f"unknown model {name}")


MODELS = ["small_cnn", "lstm", "mobilenet_v2", "resnet50", "bert_base"]
EXTRA = ["distilbert"]  # exported only with --only


def randomize_bn_stats(model, g):
    """Fresh BatchNorm layers have mean 0 / var 1, which makes Conv+BN folding trivially exact.
    Give them seeded, non-trivial running statistics and affine parameters instead."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def check_standard_ops(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    onnx.checker.check_model(m)
    odd = sorted({f"{n.domain}::{n.op_type}" for n in m.graph.node if n.domain not in ("", "ai.onnx")})
    if odd:
        raise SystemExit(f"{path}: non-standard ops in export: {odd}")
    return sorted({n.op_type for n in m.graph.node})


def export(name, out_dir):
    torch.manual_seed(SEED)
    model, in_name, x = build(name)
    randomize_bn_stats(model, torch.Generator().manual_seed(SEED + 2))
    model.eval()
    onnx_path = os.path.join(out_dir, f"{name}.onnx")
    with torch.no_grad():
        ref = model(x)
    # Exported with autograd on: torch 1.13's TransformerEncoderLayer takes its fused fast path
    # ("_transformer_encoder_layer_fwd", no ONNX form) only under no_grad in eval mode.
    tmp = onnx_path + ".tmp"
    torch.onnx.export(model, (x,), tmp, input_names=[in_name], output_names=["output"],
                      opset_version=OPSET, do_constant_folding=True,
                      training=torch.onnx.TrainingMode.EVAL)
    ops = check_standard_ops(tmp)
    np.save(os.path.join(out_dir, f"{name}.input.npy"), x.numpy())
    np.save(os.path.join(out_dir, f"{name}.torch_out.npy"), ref.numpy())
    os.replace(tmp, onnx_path)  # last: the .onnx marks a complete export
    return ops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="re-export models that are already present")
    ap.add_argument("--only", help="comma-separated model names (" + ", ".join(MODELS) + ")")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
    a = ap.parse_args()
    names = a.only.split(",") if a.only else MODELS
    for n in names:
        if n not in MODELS + EXTRA:
            ap.error(f"unknown model '{n}' (known: {', '.join(MODELS)})")
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    total = time.time()
    for n in names:
        files = [os.path.join(a.out, f"{n}{s}") for s in (".onnx", ".input.npy", ".torch_out.npy")]
        if not a.force and all(os.path.exists(f) for f in files):
            print(f"{n:14} present (use --force to re-export)")
            continue
        t = time.time()
        ops = export(n, a.out)
        size = os.path.getsize(files[0]) / 2**20
        print(f"{n:14} exported in {time.time() - t:5.1f} s  {size:7.1f} MiB  ops: {' '.join(ops)}", flush=True)
    print(f"export_models: done in {time.time() - total:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
