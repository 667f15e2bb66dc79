#!/usr/bin/python3
"""Writes the libFuzzer seed corpora (nothing binary is checked in).

    make_corpus.py OUT_DIR [OPENNPU_CLI]

OUT_DIR/onnx   small models made with onnx.helper (MatMul, Conv, If/Loop subgraphs, symbolic dims,
               external data), a sample of the ONNX node-test models from libonnx-testdata and
               models/small_cnn.onnx when it has been exported, and the crash regressions of
               fuzz/regressions.py
OUT_DIR/npy    arrays written with numpy: every dtype opennpu reads, 0-d, empty, large headers
               (format 2.0), Fortran order
OUT_DIR/hw     the hardware presets hw/*.toml
OUT_DIR/cache  compiled-model cache files written by OPENNPU_CLI (`opennpu run`, CPU and NPU
               loads) behind each of fuzz_cache's mode bytes (see fuzz/fuzz_cache.cpp), and a
               few models behind mode 4 (external_files)
"""
import glob
import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = "/usr/share/libonnx-testdata/data/node"


def model(nodes, inputs, outputs, inits=(), opset=13, **kw):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits), **kw)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def onnx_seeds():
    rng = np.random.default_rng(0)
    out = {}
    w = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    out["mlp"] = model([helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["s"]),
                        helper.make_node("Relu", ["s"], ["y"])], [vi("x", [2, 3])], [vi("y", [2, 4])], [w, b])
    cw = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "cw")
    out["conv"] = model([helper.make_node("Conv", ["x", "cw"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
                         helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2]),
                         helper.make_node("Flatten", ["p"], ["y"])],
                        [vi("x", [1, 3, 8, 8])], [vi("y", None)], [cw])
    out["symbolic"] = model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])],
                            [vi("x", ["N", 3])], [vi("y", None)])
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [vi("t", [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e", [2])])
    out["if"] = model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                      [vi("c", [], TensorProto.BOOL), vi("x", [2])], [vi("y", [2])])
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Add", ["v_in", "v_in"], ["v_out"])], "body",
                             [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL), vi("v_in", [2])],
                             [vi("cond_out", [], TensorProto.BOOL), vi("v_out", [2])])
    out["loop"] = model([helper.make_node("Loop", ["n", "c", "v"], ["y"], body=body)],
                        [vi("n", [], TensorProto.INT64), vi("c", [], TensorProto.BOOL), vi("v", [2])], [vi("y", [2])])
    ext = numpy_helper.from_array(np.ones(4, np.float32), "e")
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        ext.external_data.add(key=k, value=v)
    out["external"] = model([helper.make_node("Add", ["x", "e"], ["y"])], [vi("x", [4])], [vi("y", [4])], [ext])
    blobs = {k: m.SerializeToString() for k, m in out.items()}
    # ONNX's node tests: one op each, with its attributes; every 6th of them keeps the corpus small.
    for i, p in enumerate(sorted(glob.glob(os.path.join(TESTDATA, "*", "model.onnx")))):
        if i % 6 == 0:
            blobs["node_" + os.path.basename(os.path.dirname(p))] = open(p, "rb").read()
    # Inputs that crashed before (fuzz/regressions.py), so fuzz_seeds replays them under ASan.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import regressions
    for name, m in regressions.cases():
        blobs["regression_" + name] = m.SerializeToString()
    cnn = os.path.join(ROOT, "models", "small_cnn.onnx")
    if os.path.exists(cnn):
        blobs["small_cnn"] = open(cnn, "rb").read()
    return blobs


def npy_bytes(a, version=None):
    f = io.BytesIO()
    if version is None:
        np.save(f, a)
    else:
        np.lib.format.write_array(f, a, version=version)
    return f.getvalue()


def npy_seeds():
    rng = np.random.default_rng(1)
    out = {}
    for dt in ("<f4", "<f8", "<f2", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "|b1"):
        out["arr_" + dt.strip("<|")] = npy_bytes((rng.standard_normal((2, 3)) * 10).astype(dt))
    out["scalar"] = npy_bytes(np.float32(1.5))
    out["empty"] = npy_bytes(np.zeros((0, 3), np.float32))
    out["rank5"] = npy_bytes(np.ones((1, 2, 1, 2, 1), np.int64))
    out["v2"] = npy_bytes(np.ones((2, 2), np.float32), version=(2, 0))
    out["fortran"] = npy_bytes(np.asfortranarray(np.ones((2, 3), np.float32)))
    out["big_endian"] = npy_bytes(np.ones(3, ">f4"))
    return out


def cache_seeds(cli, onnx_blobs):
    if not cli:
        return {}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name in ("mlp", "conv"):
            mp = os.path.join(d, name + ".onnx")
            open(mp, "wb").write(onnx_blobs[name])
            m = onnx.load_from_string(onnx_blobs[name])
            dims = [x.dim_value for x in m.graph.input[0].type.tensor_type.shape.dim]
            xp = os.path.join(d, name + ".x.npy")
            np.save(xp, np.ones(dims, np.float32))
            for dev in (["--device", "cpu"], ["--hw", "ane_m1"]):
                cdir = os.path.join(d, "cache_" + name + "_" + dev[-1])
                env = dict(os.environ, OPENNPU_CACHE_DIR=cdir)
                subprocess.run([cli, "run", mp, "--input", "x=" + xp] + dev, env=env, check=True,
                               stdout=subprocess.DEVNULL)
                for f in glob.glob(os.path.join(cdir, "*.onpucm")):
                    out[name + "_" + dev[-1]] = open(f, "rb").read()
    if not out:
        sys.exit("make_corpus.py: opennpu wrote no compiled-model cache files")
    seeds = {}
    for k, blob in out.items():
        npu = not k.endswith("_cpu")
        modes = [0, 2, 7] if npu else [0, 1]  # see fuzz_cache.cpp: 2 -> 1 core, 7 -> 2 cores
        for mode in modes:
            seeds["%s_mode%d" % (k, mode)] = bytes([mode]) + blob
    for k in ("external", "mlp", "if"):  # mode 4: external_files over model bytes
        seeds["onnx_%s_mode4" % k] = bytes([4]) + onnx_blobs[k]
    return seeds


def write(d, blobs, ext):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for k, v in blobs.items():
        with open(os.path.join(d, k + ext), "wb") as f:
            f.write(v)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    cli = sys.argv[2] if len(sys.argv) == 3 else None
    o = onnx_seeds()
    write(os.path.join(out, "onnx"), o, ".onnx")
    write(os.path.join(out, "npy"), npy_seeds(), ".npy")
    write(os.path.join(out, "hw"), {os.path.basename(p)[:-5]: open(p, "rb").read()
                                    for p in glob.glob(os.path.join(ROOT, "hw", "*.toml"))}, ".toml")
    if cli:
        write(os.path.join(out, "cache"), cache_seeds(cli, o), ".bin")
    for sub in sorted(os.listdir(out)):
        print("%s: %d seeds" % (os.path.join(out, sub), len(os.listdir(os.path.join(out, sub)))))


if __name__ == "__main__":
    main()
