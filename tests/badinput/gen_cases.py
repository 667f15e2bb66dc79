#!/usr/bin/python3
"""Writes the bad-input cases into a directory and a manifest (cases.json) describing them.

  gen_cases.py OUT_DIR

Every case is built here, at test time, with onnx.helper and numpy: no binary blobs are checked
in. Each manifest entry is {"name", "args", "expect", "why"}: the `opennpu` arguments to run
(paths are absolute), a substring the one-line error message must contain (case-insensitive),
and the guarantee the case checks. docs/security.md lists the same cases.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 14


def model(nodes, inputs, outputs, inits=(), opset=OPSET, extra_opsets=(), name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(g, opset_imports=ops, producer_name="opennpu-badinput")
    m.ir_version = 8
    return m


def vi(name, dtype=TensorProto.FLOAT, shape=(1, 3, 4, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def identity_model():
    """A valid model with no nodes: output y is input x. It runs without any kernel, so the .npy
    and feed cases test input handling only."""
    return model([], [vi("x")], [vi("x")])


def relu_model(**kw):
    return model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x")], [vi("y")], **kw)


def add_w_model(w_tensor):
    """y = x + w, with w an initializer (the tensor under test)."""
    return model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", shape=(4,))], [vi("y", shape=(4,))],
                 inits=[w_tensor])


def external_tensor(location, offset=None, length=None, dims=(4,)):
    t = TensorProto()
    t.name = "w"
    t.data_type = TensorProto.FLOAT
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return t


def raw_tensor(dims, nbytes):
    t = TensorProto()
    t.name = "w"
    t.data_type = TensorProto.FLOAT
    t.dims.extend(dims)
    t.raw_data = b"\0" * nbytes
    return t


def nested_if(depth):
    """An If whose then-branch holds an If whose then-branch holds ... `depth` levels. Built top
    down in place (make_attribute would copy the whole nest at every level)."""
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    m = model([], [vi("x")], [vi("y1")], inits=[cond])
    g = m.graph
    for d in range(1, depth + 1):
        node = g.node.add()
        node.op_type, node.name = "If", f"if{d}"
        node.input.append("c")
        node.output.append(f"y{d}")
        other = helper.make_graph([helper.make_node("Identity", ["x"], [f"e{d}"])], f"else{d}", [], [vi(f"e{d}")])
        node.attribute.append(helper.make_attribute("else_branch", other))
        then = node.attribute.add()
        then.name, then.type = "then_branch", onnx.AttributeProto.GRAPH
        g = then.g
        g.name = f"level{d}"
        g.output.append(vi(f"y{d + 1}"))
    g.node.append(helper.make_node("Identity", ["x"], [f"y{depth + 1}"]))
    return m


def npy_bytes(arr):
    import io
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def main():
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    cases = []

    def case_dir(name):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        return d

    def add(name, args, expect, why):
        cases.append({"name": name, "args": args, "expect": expect, "why": why})

    def save_model(name, m, cmd="run", feed=True):
        p = os.path.join(case_dir(name), "model.onnx")
        with open(p, "wb") as f:
            f.write(m.SerializeToString())
        args = [cmd, p]
        if cmd == "run" and feed:
            args += ["--input", f"x={x_path}"]
        return args

    def save_bytes(name, data, fname="model.onnx"):
        p = os.path.join(case_dir(name), fname)
        with open(p, "wb") as f:
            f.write(data)
        return p

    # A good input for the [1,3,4,4] float models.
    x_path = save_bytes("_inputs", npy_bytes(np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)), "x.npy")
    good = relu_model().SerializeToString()

    # --- the model file itself ---
    rng = np.random.default_rng(7)
    add("garbage_onnx", ["info", save_bytes("garbage_onnx", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())],
        "not a valid ONNX model", "random bytes are refused as a protobuf parse error")
    add("truncated_onnx", ["info", save_bytes("truncated_onnx", good[: len(good) * 2 // 3])],
        "not a valid ONNX model", "a model cut short is refused")
    add("empty_file", ["info", save_bytes("empty_file", b"")], "not a valid ONNX model", "an empty file has no graph")
    add("missing_file", ["info", os.path.join(out, "no_such_dir", "model.onnx")], "no such file",
        "a path that does not exist is named")
    add("unknown_op", save_model("unknown_op", model([helper.make_node("FrobnicateXYZ", ["x"], ["y"], name="frob")],
                                                     [vi("x")], [vi("y")])),
        "FrobnicateXYZ", "an op nobody implements is reported by name, never skipped")
    add("unknown_domain", save_model("unknown_domain", model(
        [helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example.nowhere")], [vi("x")], [vi("y")],
        extra_opsets=[("com.example.nowhere", 1)])),
        "com.example.nowhere", "an op of an unknown domain is reported with its domain")
    add("opset_99", save_model("opset_99", relu_model(opset=99), cmd="info"), "opset 99",
        "an ai.onnx opset beyond what the build knows is refused at load")
    add("undefined_value", save_model("undefined_value", model(
        [helper.make_node("Add", ["x", "w_not_defined"], ["y"], name="add")], [vi("x")], [vi("y")]), cmd="info"),
        "w_not_defined", "a node reading a value nothing defines (missing initializer) is named")
    add("cycle", save_model("cycle", model(
        [helper.make_node("Add", ["x", "b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2")],
        [vi("x")], [vi("a")]), cmd="info"), "cycle", "a cyclic graph is refused, naming nodes on the cycle")
    add("duplicate_node_output", save_model("duplicate_node_output", model(
        [helper.make_node("Relu", ["x"], ["y"], name="n1"), helper.make_node("Relu", ["x"], ["y"], name="n2")],
        [vi("x")], [vi("y")]), cmd="info"), "more than once", "two nodes writing the same value name is refused")
    add("duplicate_graph_output", save_model("duplicate_graph_output", model(
        [helper.make_node("Relu", ["x"], ["y"], name="n1")], [vi("x")], [vi("y"), vi("y")]), cmd="info"),
        "twice", "a graph output listed twice is refused")

    # --- external data ---
    d = case_dir("ext_dotdot")
    save_bytes("ext_dotdot", b"\0" * 16, "../outside.bin")
    add("ext_dotdot", save_model("ext_dotdot", add_w_model(external_tensor("../outside.bin")), cmd="info"),
        "..", "external data may not leave the model's directory through '..'")
    add("ext_absolute", save_model("ext_absolute", add_w_model(external_tensor("/etc/passwd")), cmd="info"),
        "absolute", "external data may not name an absolute path")
    d = case_dir("ext_symlink")
    secret = save_bytes("_outside", b"\0" * 16, "secret.bin")
    link = os.path.join(d, "weights.bin")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(secret, link)
    add("ext_symlink", save_model("ext_symlink", add_w_model(external_tensor("weights.bin")), cmd="info"),
        "outside", "a symbolic link inside the model directory pointing out of it is refused")
    save_bytes("ext_offset_past_end", b"\0" * 16, "weights.bin")
    add("ext_offset_past_end", save_model("ext_offset_past_end",
                                          add_w_model(external_tensor("weights.bin", offset=64, length=16)), cmd="info"),
        "past the end", "an offset beyond the file is refused before reading")
    save_bytes("ext_length_mismatch", b"\0" * 64, "weights.bin")
    add("ext_length_mismatch", save_model("ext_length_mismatch",
                                          add_w_model(external_tensor("weights.bin", offset=0, length=8)), cmd="info"),
        "length", "a length that disagrees with dims x element size is refused")
    add("ext_missing_file", save_model("ext_missing_file", add_w_model(external_tensor("nothere.bin")), cmd="info"),
        "does not exist", "a missing external file is named")

    # --- tensor sizes ---
    add("raw_data_size", save_model("raw_data_size", add_w_model(raw_tensor((4,), 12)), cmd="info"),
        "raw_data", "raw_data whose size disagrees with dims is refused")
    add("negative_dims", save_model("negative_dims", add_w_model(raw_tensor((-4,), 16)), cmd="info"),
        "negative", "a negative dimension is refused")
    add("dims_overflow", save_model("dims_overflow", add_w_model(raw_tensor((2**40, 2**40), 0)), cmd="info"),
        "int64", "dims whose product overflows int64 are refused")
    add("huge_tensor", save_model("huge_tensor", add_w_model(raw_tensor((10**6, 10**6), 0)), cmd="info"),
        "memory limit", "a tensor claiming 10^12 elements is refused before anything is allocated")

    # --- structure ---
    add("nested_1000", save_model("nested_1000", nested_if(1000), cmd="info"), "nested",
        "subgraphs nested 1000 deep are refused (no stack overflow)")
    add("attr_wrong_type", save_model("attr_wrong_type", model(
        [helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[0.5, 1.5, 2.5, 3.5])], [vi("x")],
        [vi("y", shape=(1, 3, 4, 4))])),
        "perm", "an attribute of the wrong type is refused naming the node and attribute")

    # --- .npy inputs (on the no-node model: input handling only) ---
    ident = save_model("npy_model", identity_model(), cmd="info")[1]

    def npy_case(name, data, expect, why):
        p = save_bytes(name, data, "x.npy")
        add(name, ["run", ident, "--input", f"x={p}"], expect, why)

    good_x = npy_bytes(np.zeros((1, 3, 4, 4), np.float32))
    npy_case("npy_truncated", good_x[:40], "truncated", "a .npy cut inside its header is refused")
    npy_case("npy_short_data", good_x[:-8], "needs", "a .npy whose data is shorter than its shape needs is refused")
    lying = good_x.replace(b"(1, 3, 4, 4)", b"(9, 3, 4, 4)")
    assert lying != good_x
    npy_case("npy_shape_lies", lying, "needs", "a header claiming more elements than the data holds is refused")
    npy_case("npy_wrong_dtype", npy_bytes(np.zeros((1, 3, 4, 4), np.float64)), "dtype",
             "an input of the wrong dtype is refused (no silent casting)")
    npy_case("npy_wrong_shape", npy_bytes(np.zeros((1, 3, 4, 5), np.float32)), "shape",
             "an input of the wrong static shape is refused")
    npy_case("npy_fortran", npy_bytes(np.asfortranarray(np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4))), "fortran",
             "a Fortran-order .npy is refused with advice")
    npy_case("npy_garbage", rng.integers(0, 256, 300, dtype=np.uint8).tobytes(), "not a .npy",
             "garbage is refused as not a .npy file")
    npy_case("npy_bad_dtype", good_x.replace(b"'<f4'", b"'<c8'"), "dtype", "an unsupported .npy dtype is named")
    add("missing_input", ["run", ident], "x: float32 [1,3,4,4]", "running without a required input lists the expected inputs")
    add("unknown_input", ["run", ident, "--input", f"x={x_path}", "--input", f"nope={x_path}"], "'nope' is not an input",
        "an input name the model does not have is refused, listing the expected ones")
    add("input_file_missing", ["run", ident, "--input", f"x={os.path.join(out, 'nothere.npy')}"], "cannot open",
        "a missing input file is named")

    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
