#!/usr/bin/python3
"""Writes the bad-input cases into a directory and a manifest (cases.json: {"cases": [...],
"outside": [files outside every model directory that the cases point at]}) describing them.

  gen_cases.py OUT_DIR

Every case is built here, at test time, with onnx.helper and numpy: no binary blobs are checked
in. Each manifest entry is {"name", "args", "expect", "why"}: the `opennpu` arguments to run
(paths are absolute), a substring the one-line error message must contain (case-insensitive),
and the guarantee the case checks; optionally "timeout" (seconds). Entries of "kind": "cache"
add "cache_dir", "tamper", "output" and "reference" (see run_cases.py). docs/security.md lists
the same cases.
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
    return helper.make_tensor_value_info(name, dtype, None if shape is None else list(shape))


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


def if_model(then_outs, else_outs):
    """y = If(c) with the given branch outputs [(name, dtype)], each an Identity/Cast of x."""
    def branch(name, outs):
        nodes = [helper.make_node("Cast", ["x"], [o], to=dt) for o, dt in outs]
        return helper.make_graph(nodes, name, [], [vi(o, dt) for o, dt in outs])
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("then", then_outs),
                            else_branch=branch("else", else_outs))
    return model([node], [vi("x")], [vi("y")], inits=[cond])


def loop_model(trip_count, body_returns_carried=True):
    """y = Loop(M, cond=true, v=x) with body v' = v + 1 (the loop-carried value), cond stays true.
    Without body_returns_carried the body returns only its condition: fewer values than the Loop
    carries."""
    outs = [vi("cond_out", TensorProto.BOOL, ())] + ([vi("v_out")] if body_returns_carried else [])
    nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    if body_returns_carried:
        nodes.append(helper.make_node("Add", ["v_in", "one"], ["v_out"]))
    body = helper.make_graph(nodes, "body", [vi("i", TensorProto.INT64, ()), vi("cond_in", TensorProto.BOOL, ()),
                                             vi("v_in")], outs)
    inits = [helper.make_tensor("M", TensorProto.INT64, [], [trip_count]),
             helper.make_tensor("t", TensorProto.BOOL, [], [True]), helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    node = helper.make_node("Loop", ["M", "t", "x"], ["y"], name="loop", body=body)
    return model([node], [vi("x")], [vi("y")], inits=inits)


def main():
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    cases = []

    def case_dir(name):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        return d

    def add(name, args, expect, why):
        """An error case: opennpu ARGS must fail cleanly with one message containing EXPECT."""
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
        os.makedirs(os.path.dirname(p), exist_ok=True)
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
    # Every file these cases point at outside their model directory is listed in the manifest's
    # "outside": run_cases.py watches them with inotify and fails a case that opens one.
    d = case_dir("ext_dotdot")
    outside = [save_bytes("ext_dotdot", b"\0" * 16, "../outside.bin")]
    add("ext_dotdot", save_model("ext_dotdot", add_w_model(external_tensor("../outside.bin")), cmd="info"),
        "..", "external data may not leave the model's directory through '..'")
    secret = save_bytes("_outside", b"\0" * 16, "secret.bin")
    outside.append(secret)
    add("ext_absolute", save_model("ext_absolute", add_w_model(external_tensor(secret)), cmd="info"),
        "absolute", "external data may not name an absolute path")
    add("ext_absolute_etc", save_model("ext_absolute_etc", add_w_model(external_tensor("/etc/passwd")), cmd="info"),
        "absolute", "external data may not name an absolute path (/etc/passwd)")
    d = case_dir("ext_symlink")
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
    save_bytes("ext_nested_dotdot", b"\0" * 16, "a/placeholder.bin")  # directory a/ exists
    add("ext_nested_dotdot", save_model("ext_nested_dotdot", add_w_model(external_tensor("a/../../outside.bin")),
                                        cmd="info"),
        "..", "a '..' nested after a real directory (a/../../x) is refused like a leading one")
    d = case_dir("ext_hardlink")
    secret2 = save_bytes("_outside", b"\0" * 16, "secret2.bin")
    outside.append(secret2)
    link = os.path.join(d, "weights.bin")
    if os.path.lexists(link):
        os.remove(link)
    os.link(secret2, link)
    add("ext_hardlink", save_model("ext_hardlink", add_w_model(external_tensor("weights.bin")), cmd="info"),
        "hard link", "a hard link inside the model directory (to a file outside it) is refused")
    save_bytes("ext_offset_negative", b"\0" * 64, "weights.bin")
    add("ext_offset_negative", save_model("ext_offset_negative",
                                          add_w_model(external_tensor("weights.bin", offset=-8, length=16)), cmd="info"),
        "offset", "a negative offset is refused")
    save_bytes("ext_length_negative", b"\0" * 64, "weights.bin")
    add("ext_length_negative", save_model("ext_length_negative",
                                          add_w_model(external_tensor("weights.bin", offset=0, length=-16)), cmd="info"),
        "length", "a negative length is refused")
    save_bytes("ext_offset_overflow", b"\0" * 64, "weights.bin")
    add("ext_offset_overflow", save_model("ext_offset_overflow", add_w_model(
        external_tensor("weights.bin", offset=2**63 - 8, length=16)), cmd="info"),
        "past the end", "an offset + length that overflows int64 is refused, not wrapped")
    save_bytes("ext_offset_u64", b"\0" * 64, "weights.bin")
    add("ext_offset_u64", save_model("ext_offset_u64", add_w_model(
        external_tensor("weights.bin", offset=2**64 - 8, length=16)), cmd="info"),
        "offset", "an offset beyond int64 (it would wrap to -8) is refused")

    # --- tensor sizes ---
    add("raw_data_size", save_model("raw_data_size", add_w_model(raw_tensor((4,), 12)), cmd="info"),
        "raw_data", "raw_data whose size disagrees with dims is refused")
    add("negative_dims", save_model("negative_dims", add_w_model(raw_tensor((-4,), 16)), cmd="info"),
        "negative", "a negative dimension is refused")
    add("dims_overflow", save_model("dims_overflow", add_w_model(raw_tensor((2**40, 2**40), 0)), cmd="info"),
        "int64", "dims whose product overflows int64 are refused")
    add("huge_tensor", save_model("huge_tensor", add_w_model(raw_tensor((10**6, 10**6), 0)), cmd="info"),
        "memory limit", "a tensor claiming 10^12 elements is refused before anything is allocated")
    typed = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    del typed.float_data[3:]  # make_tensor checks the count: shorten after it
    add("typed_data_size", save_model("typed_data_size", add_w_model(typed), cmd="info"),
        "float_data", "typed data (float_data) whose count disagrees with dims is refused")
    typed_i = helper.make_tensor("w", TensorProto.INT64, [4], [1, 2, 3, 4])
    typed_i.int64_data.append(5)
    add("typed_data_size_int64", save_model("typed_data_size_int64", model(
        [helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT), helper.make_node("Add", ["x", "wf"], ["y"])],
        [vi("x", shape=(4,))], [vi("y", shape=(4,))], inits=[typed_i]), cmd="info"),
        "int64_data", "int64_data whose count disagrees with dims is refused")
    add("dims_bytes_overflow", save_model("dims_bytes_overflow", add_w_model(raw_tensor((2**31, 2**31), 0)), cmd="info"),
        "memory limit", "2^62 elements fit int64 but their bytes overflow size_t: refused before allocating")
    # --max-memory also bounds tensors computed at run time: Expand to [8192,3,4,4] float is 1.5 MiB.
    shape = numpy_helper.from_array(np.array([8192, 3, 4, 4], np.int64), "shape")
    expand_args = save_model("max_memory_intermediate", model(
        [helper.make_node("Expand", ["x", "shape"], ["y"], name="expand")], [vi("x")],
        [vi("y", shape=(8192, 3, 4, 4))], inits=[shape]))
    add("max_memory_intermediate", ["--max-memory", "1"] + expand_args, "memory limit",
        "an intermediate tensor larger than --max-memory is refused before it is allocated")

    # --- structure ---
    add("nested_3000", save_model("nested_3000", nested_if(3000), cmd="info"), "nested",
        "subgraphs nested 3000 deep are refused (no stack overflow)")
    add("nested_100", save_model("nested_100", nested_if(100), cmd="info"), "nested more than",
        "subgraphs nested 100 deep (within protobuf's recursion limit) are refused by the importer's depth limit")
    add("attr_wrong_type", save_model("attr_wrong_type", model(
        [helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[0.5, 1.5, 2.5, 3.5])], [vi("x")],
        [vi("y", shape=(1, 3, 4, 4))])),
        "perm", "an attribute of the wrong type is refused naming the node and attribute")
    add("attr_missing", save_model("attr_missing", model(
        [helper.make_node("Concat", ["x", "x"], ["y"], name="cat")], [vi("x")], [vi("y", shape=(2, 3, 4, 4))])),
        "axis", "a missing required attribute is refused naming the node and attribute")
    add("if_branch_count", save_model("if_branch_count", if_model(
        [("t1", TensorProto.FLOAT), ("t2", TensorProto.FLOAT)], [("e1", TensorProto.FLOAT)]), cmd="info"),
        "branch", "an If whose branches return different numbers of values is refused at load")
    add("if_branch_type", save_model("if_branch_type", if_model(
        [("t1", TensorProto.FLOAT)], [("e1", TensorProto.INT64)]), cmd="info"),
        "branch", "an If whose branches return different types is refused at load")
    add("loop_body_mismatch", save_model("loop_body_mismatch", loop_model(3, body_returns_carried=False), cmd="info"),
        "body", "a Loop whose body returns fewer values than the loop carries is refused at load")
    add("loop_huge_trip_count", save_model("loop_huge_trip_count", loop_model(10**12)) + ["--max-loop-iterations", "1000"],
        "1000 iterations", "a Loop with trip count 10^12 and a condition that stays true stops at the limit")
    add("loop_default_limit", save_model("loop_default_limit", loop_model(2**62)),
        "1000000 iterations", "without --max-loop-iterations the default limit still stops a loop that never ends")
    cases[-1]["timeout"] = 90  # a million iterations: ~3 s in Release, several times that under sanitizers
    add("reshape_impossible", save_model("reshape_impossible", model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")], [vi("x")], [vi("y", shape=(5, 7))],
        inits=[numpy_helper.from_array(np.array([5, 7], np.int64), "shape")])),
        "48", "Reshape of 48 elements to [5,7] is refused naming the sizes")

    def run_with(name, m, extra):
        """A run case feeding x plus extra inputs [(name, array)] written as .npy files."""
        args = save_model(name, m)
        for n, arr in extra:
            args += ["--input", f"{n}={save_bytes(name, npy_bytes(arr), n + '.npy')}"]
        return args

    idx_vi = vi("idx", TensorProto.INT64, (2,))
    add("gather_index_range", run_with("gather_index_range", model(
        [helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=1)], [vi("x"), idx_vi],
        [vi("y", shape=(1, 2, 4, 4))]), [("idx", np.array([0, 100], np.int64))]),
        "out of range", "a Gather index beyond the axis, known only at run time, is refused (no out-of-bounds read)")
    add("gather_index_negative", run_with("gather_index_negative", model(
        [helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=1)], [vi("x"), idx_vi],
        [vi("y", shape=(1, 2, 4, 4))]), [("idx", np.array([0, -4], np.int64))]),
        "out of range", "a negative Gather index below -dim is refused")
    sidx_vi = vi("idx", TensorProto.INT64, (1, 3, 4, 4))
    bad_idx = np.zeros((1, 3, 4, 4), np.int64)
    bad_idx[0, 1, 2, 3] = 4
    add("scatter_index_range", run_with("scatter_index_range", model(
        [helper.make_node("ScatterElements", ["x", "idx", "x"], ["y"], name="scatter", axis=3)], [vi("x"), sidx_vi],
        [vi("y")]), [("idx", bad_idx)]),
        "out of range", "a ScatterElements index beyond the axis is refused at run time (no out-of-bounds write)")
    w_bad = numpy_helper.from_array(np.ones((2, 5, 3, 3), np.float32), "w")
    add("conv_channels", save_model("conv_channels", model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [vi("x")], [vi("y", shape=(1, 2, 2, 2))],
        inits=[w_bad])), "channel", "a Conv whose weights expect 5 input channels for a 3-channel input is refused")
    i64_in = lambda n, shape=(): vi(n, TensorProto.INT64, shape)
    add("div_int_by_zero", run_with("div_int_by_zero", model(
        [helper.make_node("Div", ["a", "b"], ["y"], name="div")], [vi("x"), i64_in("a", (2,)), i64_in("b", (2,))],
        [i64_in("y", (2,))]), [("a", np.array([7, 1], np.int64)), ("b", np.array([0, 1], np.int64))]),
        "division by zero", "an integer division by zero is refused (no SIGFPE)")
    add("constant_of_shape_huge", run_with("constant_of_shape_huge", model(
        [helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")], [vi("x"), i64_in("s", (2,))],
        [vi("y", shape=(10**6, 10**6))]), [("s", np.array([10**6, 10**6], np.int64))]),
        "memory limit", "a shape read at run time that asks for 10^12 elements is refused before allocating")
    add("range_huge", run_with("range_huge", model(
        [helper.make_node("Range", ["a", "b", "d"], ["y"], name="range")], [vi("x"), i64_in("a"), i64_in("b"), i64_in("d")],
        [i64_in("y", (2**62,))]), [("a", np.array(0, np.int64)), ("b", np.array(2**62, np.int64)),
                                   ("d", np.array(1, np.int64))]),
        "memory limit", "a Range of 2^62 values is refused before allocating")
    add("resize_scale_huge", run_with("resize_scale_huge", model(
        [helper.make_node("Resize", ["x", "", "sc"], ["y"], name="resize")], [vi("x"), vi("sc", shape=(4,))],
        [vi("y", shape=(1, 3, 4 * 10**9, 4 * 10**9))]), [("sc", np.array([1, 1, 1e9, 1e9], np.float32))]),
        "node 'resize'", "scales of 10^9 whose output size overflows int64 are refused naming the node")
    w_ok = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    add("conv_output_overflow", save_model("conv_output_overflow", model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[2**40] * 4)], [vi("x")],
        [vi("y", shape=(1, 2, 2**41, 2**41))], inits=[w_ok])),
        "node 'conv'", "pads of 2^40 whose output element count overflows int64 are refused naming the node")
    w_big = numpy_helper.from_array(np.ones((2, 3, 9, 9), np.float32), "w")
    add("conv_kernel_too_big", save_model("conv_kernel_too_big", model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [vi("x")], [vi("y", shape=None)], inits=[w_big])),
        "'conv' (Conv)", "a 9x9 kernel on a 4x4 input (negative output size) is refused naming the node")
    add("conv_zero_stride", save_model("conv_zero_stride", model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", strides=[0, 0])], [vi("x")],
        [vi("y", shape=(1, 2, 2, 2))], inits=[w_ok])), "stride", "a Conv with stride 0 is refused (no division by zero)")

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
    dup = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 4, 4), 'descr': '<f8', }\n"
    npy_case("npy_duplicate_key", b"\x93NUMPY\x01\x00" + len(dup).to_bytes(2, "little") + dup + bytes(192), "twice",
             "a header with a key twice is refused (numpy would read the last, a naive parser the first)")
    d = case_dir("not_regular")
    fifo = os.path.join(d, "fifo")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    add("input_is_directory", ["run", ident, "--input", f"x={d}"], "not a regular file",
        "a directory given as an input is named as such (not 'larger than the memory limit')")
    add("input_fifo", ["run", ident, "--input", f"x={fifo}"], "not a regular file",
        "a FIFO given as an input is refused without opening it (opening would block forever)")
    add("model_is_directory", ["info", d], "not a regular file", "a directory given as the model is named as such")
    add("model_fifo", ["info", fifo], "not a regular file", "a FIFO given as the model is refused without blocking")
    add("missing_input", ["run", ident], "x: float32 [1,3,4,4]", "running without a required input lists the expected inputs")
    add("unknown_input", ["run", ident, "--input", f"x={x_path}", "--input", f"nope={x_path}"], "'nope' is not an input",
        "an input name the model does not have is refused, listing the expected ones")
    add("input_file_missing", ["run", ident, "--input", f"x={os.path.join(out, 'nothere.npy')}"], "cannot open",
        "a missing input file is named")

    # --- hardware files (--hw FILE): each bad value is named as file:line: key ---
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "hw", "ane_m1.toml")) as f:
        hw_lines = f.read().split("\n")

    def hw_case(name, section, key, value, why):
        """ane_m1.toml with `key` of [section] ("" = top level) set to `value`."""
        lines, sec, at = list(hw_lines), "", None
        for i, line in enumerate(lines):
            t = line.strip()
            if t.startswith("[") and not t.startswith("[["):
                sec = t.strip("[]")
            elif sec == section and t.split("=")[0].strip() == key:
                lines[i], at = f"{key} = {value}", i + 1
        assert at, (section, key)
        p = save_bytes(name, "\n".join(lines).encode(), "engine.toml")
        full = f"{section}.{key}" if section else key
        add(name, ["run", relu_path, "--input", f"x={x_path}", "--hw", p], f"engine.toml:{at}: {full}", why)

    relu_path = save_model("hw_model", relu_model(), cmd="info")[1]
    hw_case("hw_cores_zero", "", "cores", "0", "an engine with zero cores is refused, naming file:line: key")
    hw_case("hw_cores_negative", "", "cores", "-16", "a negative core count is refused")
    hw_case("hw_clock_negative", "", "clock_ghz", "-1.34", "a negative clock is refused")
    hw_case("hw_clock_nan", "", "clock_ghz", "nan", "a clock of NaN is refused (no NaN timings)")
    hw_case("hw_sram_1e30", "core.sram", "bytes", "1e30", "an SRAM of 1e30 bytes is refused (a float where an int is due)")
    hw_case("hw_sram_huge", "core.sram", "bytes", str(2**62), "an SRAM of 2^62 bytes is refused by its range")
    hw_case("hw_dram_bw_huge", "memory", "dram_bandwidth_gbps", "1e30", "an enormous DRAM bandwidth is refused by its range")
    hw_case("hw_macs_zero", "core.mac_array", "rows", "0", "a MAC array with zero rows is refused")

    # --- compiled-model cache: not user input. A tampered entry gives a warning and a rebuild, and
    # the run succeeds with correct output (kind "cache": run_cases.py runs it, tampers with every
    # cache file, runs again). ---
    xs = (np.arange(48, dtype=np.float32) - 24).reshape(1, 3, 4, 4)
    xs_path = save_bytes("_inputs", npy_bytes(xs), "xs.npy")
    ref_path = save_bytes("_inputs", npy_bytes(np.maximum(xs, 0)), "relu_xs_ref.npy")  # independent reference

    tamper_what = {"flip": "with 16 bytes flipped in its middle", "truncate": "cut to half its length",
                   "header": "with its first 16 bytes overwritten"}

    def cache_case(name, tamper, hw=None):
        d = case_dir(name)
        args = save_model(name, relu_model(), cmd="info")
        args = ["run", args[1], "--input", f"x={xs_path}", "-o", os.path.join(d, "out")] + (["--hw", hw] if hw else [])
        cases.append({"name": name, "kind": "cache", "args": args, "cache_dir": os.path.join(d, "cache"),
                      "tamper": tamper, "output": os.path.join(d, "out", "y.npy"), "reference": ref_path,
                      "expect": "warning: compiled-model cache",
                      "why": f"a cache file {tamper_what[tamper]} is detected: a warning, a rebuild, correct output"})

    cache_case("cache_flipped_bytes", "flip")
    cache_case("cache_truncated", "truncate")
    cache_case("cache_bad_header", "header")
    cache_case("cache_npu_flipped_bytes", "flip", hw="ane_m1")

    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"cases": cases, "outside": outside}, f, indent=1)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
