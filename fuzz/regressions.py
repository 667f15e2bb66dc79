#!/usr/bin/python3
"""Inputs the fuzzers found crashing, rebuilt with onnx.helper (no binary files are checked in).

    regressions.py write DIR        writes DIR/<name>.onnx for each (make_corpus.py adds them to
                                    the fuzz_onnx seeds, so fuzz_seeds runs them under ASan)
    regressions.py check OPENNPU    runs `OPENNPU info` on each: exit 0 or 1 (a clean error) is a
                                    pass; a signal or exit 3 (internal error) fails (ctest
                                    fuzz_regressions, every build)
"""
import os
import subprocess
import sys
import tempfile

import onnx
from onnx import TensorProto, helper


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def model(nodes, inputs, outputs, opset):
    g = helper.make_graph(nodes, "g", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def cases():
    # Scan-9 without its required num_scan_inputs: libonnx's Scan inference dereferenced the
    # missing attribute (SIGSEGV in onnx::ScanInferenceFunctionOpset9).
    body = helper.make_graph([helper.make_node("Add", ["s_in", "x_in"], ["s_out"]),
                              helper.make_node("Identity", ["s_out"], ["y_out"])], "body",
                             [vi("s_in", [2]), vi("x_in", [2])], [vi("s_out", [2]), vi("y_out", [2])])
    yield "scan9_missing_num_scan_inputs", model(
        [helper.make_node("Scan", ["initial", "x"], ["y", "z"], body=body, num_sccn_inputs=1)],
        [vi("initial", [2]), vi("x", [3, 2])], [vi("y", [2]), vi("z", [3, 2])], 9)
    # Shape-15 reading a value nothing defines: Shape's data propagation dereferenced the missing
    # input type (SIGSEGV in libonnx) before the importer's own undefined-value check ran.
    yield "shape15_undefined_input", model(
        [helper.make_node("Shape", ["x"], ["y"], start=2)], [vi("=", [3, 4, 5])], [vi("y", [2], TensorProto.INT64)], 15)
    # ConvInteger on a rank-2 input with a rank-4 weight: SIGSEGV in libonnx's
    # convPoolShapeInference (it indexes spatial dims the input does not have). Found by fuzz_onnx
    # in the CI-length 60 s run; shape inference now runs in a forked child, so whatever libonnx
    # does on a malformed graph cannot take the process down.
    yield "convinteger_rank2_input", model(
        [helper.make_node("ConvInteger", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        [vi("x", [3, 4], TensorProto.UINT8), vi("w", [1, 1, 2, 2], TensorProto.UINT8)], [vi("y", None, TensorProto.INT32)], 11)
    # The same through an intermediate value (the input's rank is only known after inference).
    yield "conv_rank2_after_relu", model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w"], ["y"])],
        [vi("x", [3, 4]), vi("w", [1, 1, 2, 2])], [vi("y", None)], 11)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "write":
        os.makedirs(sys.argv[2], exist_ok=True)
        for name, m in cases():
            with open(os.path.join(sys.argv[2], "regression_" + name + ".onnx"), "wb") as f:
                f.write(m.SerializeToString())
        return
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        for name, m in cases():
            p = os.path.join(d, name + ".onnx")
            with open(p, "wb") as f:
                f.write(m.SerializeToString())
            r = subprocess.run([sys.argv[2], "info", p], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, OPENNPU_CACHE_DIR="none"))
            ok = r.returncode in (0, 1)
            failed += not ok
            print("%s %s: exit %d %s" % ("ok  " if ok else "FAIL", name, r.returncode, r.stderr.strip()[:200]))
    print("%d failed" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
