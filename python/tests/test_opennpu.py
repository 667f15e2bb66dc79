"""Tests of the opennpu Python module (run by ctest with PYTHONPATH set to the built module).

Each test builds its own tiny ONNX model with onnx.helper in a temporary directory and checks the
module against a numpy reference.
"""
import os
import tempfile
import threading
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import opennpu

RNG = np.random.default_rng(1234)
W_CONV = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
B_CONV = RNG.standard_normal(4).astype(np.float32) * 0.1
W_GEMM = RNG.standard_normal((4, 5)).astype(np.float32) * 0.5
B_GEMM = RNG.standard_normal(5).astype(np.float32) * 0.1


def save(model, directory, name):
    onnx.checker.check_model(model)
    path = os.path.join(directory, name)
    onnx.save(model, path)
    return path


def conv_net(directory):
    """X[N,3,8,8] -> Conv(3x3, pad 1) -> Relu (output "feat") -> Sin -> GlobalAveragePool -> Flatten
    -> Gemm -> Y[N,5]. Sin is not an ane_m1 op, so a partitioned model has CPU and NPU parts."""
    nodes = [
        helper.make_node("Conv", ["X", "Wc", "Bc"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["feat"], name="relu"),
        helper.make_node("Sin", ["feat"], ["sin"], name="sin"),
        helper.make_node("GlobalAveragePool", ["sin"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "Wg", "Bg"], ["Y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "conv_net",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 5]),
         helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=[numpy_helper.from_array(W_CONV, "Wc"), numpy_helper.from_array(B_CONV, "Bc"),
                     numpy_helper.from_array(W_GEMM, "Wg"), numpy_helper.from_array(B_GEMM, "Bg")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, directory, "conv_net.onnx")


def reference(x):
    """numpy reference of conv_net: returns (Y, feat) in float64."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((n, 4, h, w))
    for i in range(3):
        for j in range(3):
            conv += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + w], W_CONV[:, :, i, j].astype(np.float64))
    conv += B_CONV.astype(np.float64)[None, :, None, None]
    feat = np.maximum(conv, 0)
    pooled = np.sin(feat).mean(axis=(2, 3))
    y = pooled @ W_GEMM.astype(np.float64) + B_GEMM.astype(np.float64)
    return y, feat


def passthrough_net(directory):
    """Outputs: "same" = Identity(X), "const" = Identity(initializer C), "twice" = X + X."""
    c = np.arange(6, dtype=np.float32).reshape(2, 3)
    nodes = [
        helper.make_node("Identity", ["X"], ["same"], name="id_x"),
        helper.make_node("Identity", ["C"], ["const"], name="id_c"),
        helper.make_node("Add", ["X", "X"], ["twice"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "passthrough",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3]) for n in ("same", "const", "twice")],
        initializer=[numpy_helper.from_array(c, "C")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, directory, "passthrough.onnx"), c


def typed_net(directory):
    """int64 and bool inputs: Y = A + 1 (int64), Z = Not(B) (bool)."""
    nodes = [
        helper.make_node("Add", ["A", "one"], ["Y"], name="add"),
        helper.make_node("Not", ["B"], ["Z"], name="not"),
    ]
    graph = helper.make_graph(
        nodes, "typed",
        [helper.make_tensor_value_info("A", TensorProto.INT64, [3]),
         helper.make_tensor_value_info("B", TensorProto.BOOL, [2, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.INT64, [3]),
         helper.make_tensor_value_info("Z", TensorProto.BOOL, [2, 2])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return save(model, directory, "typed.onnx")


class OpennpuTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="opennpu_py_")
        cls.conv_path = conv_net(cls.tmp.name)
        cls.cpu = opennpu.Model(cls.conv_path, compute_units="cpu_only", dims={"N": 2})
        cls.npu = opennpu.Model(cls.conv_path, hardware="ane_m1", compute_units="all", dims={"N": 2})

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def x(self, seed=0):
        return np.random.default_rng(seed).standard_normal((2, 3, 8, 8)).astype(np.float32)

    # --- module ---
    def test_module(self):
        self.assertIsInstance(opennpu.__version__, str)
        self.assertRegex(opennpu.__version__, r"^\d+\.\d+\.\d+")
        presets = opennpu.hardware_presets()
        self.assertIn("ane_m1", presets)
        self.assertEqual(presets, sorted(presets))
        self.assertTrue(issubclass(opennpu.Error, RuntimeError))

    # --- predict ---
    def test_predict_cpu_matches_numpy(self):
        x = self.x()
        out = self.cpu.predict({"X": x})
        self.assertEqual(set(out), {"Y", "feat"})
        y, feat = reference(x)
        self.assertEqual(out["Y"].dtype, np.float32)
        self.assertEqual(out["Y"].shape, (2, 5))
        self.assertEqual(out["feat"].shape, (2, 4, 8, 8))
        np.testing.assert_allclose(out["Y"], y, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["feat"], feat, rtol=1e-4, atol=1e-5)

    def test_predict_npu_matches_numpy(self):
        x = self.x(1)
        out = self.npu.predict({"X": x})
        y, feat = reference(x)
        # NPU layers compute in FP16 (11-bit significand): compare at FP16 accuracy.
        np.testing.assert_allclose(out["feat"], feat, rtol=1e-2, atol=1e-2)
        np.testing.assert_allclose(out["Y"], y, rtol=1e-2, atol=1e-2)
        # the model's dtype is kept at the boundary, yet the values went through the FP16 engine
        self.assertEqual(out["Y"].dtype, np.float32)
        self.assertFalse(np.array_equal(out["feat"], self.cpu.predict({"X": x})["feat"]))

    def test_non_contiguous_and_list_inputs(self):
        x = self.x(2)
        expected = self.cpu.predict({"X": x})["Y"]
        # a non-contiguous view with the same values
        big = np.zeros((2, 3, 8, 16), dtype=np.float32)
        big[..., ::2] = x
        view = big[..., ::2]
        self.assertFalse(view.flags["C_CONTIGUOUS"])
        np.testing.assert_array_equal(self.cpu.predict({"X": view})["Y"], expected)
        # Fortran order, big-endian: copied to a native contiguous array first
        np.testing.assert_array_equal(self.cpu.predict({"X": np.asfortranarray(x)})["Y"], expected)
        np.testing.assert_array_equal(self.cpu.predict({"X": x.astype(">f4")})["Y"], expected)
        # a nested list is converted to the model's dtype
        np.testing.assert_array_equal(self.cpu.predict({"X": x.tolist()})["Y"], expected)

    def test_input_not_modified(self):
        x = self.x(3)
        keep = x.copy()
        self.cpu.predict({"X": x})
        self.npu.predict({"X": x})
        np.testing.assert_array_equal(x, keep)

    def test_outputs_are_callers_own(self):
        path, c = passthrough_net(self.tmp.name)
        for units in ("cpu_only", "all"):
            with self.subTest(compute_units=units):
                m = opennpu.Model(path, compute_units=units, hardware="ane_m1")
                x = np.arange(6, dtype=np.float32).reshape(2, 3) + 10
                out = m.predict({"X": x})
                np.testing.assert_array_equal(out["same"], x)
                np.testing.assert_array_equal(out["const"], c)
                np.testing.assert_array_equal(out["twice"], 2 * x)
                # no output aliases the caller's input or another output
                self.assertFalse(np.shares_memory(out["same"], x))
                for a in out:
                    for b in out:
                        if a < b:
                            self.assertFalse(np.shares_memory(out[a], out[b]))
                # writing into results changes neither the model nor the next prediction
                for v in out.values():
                    v[...] = -1
                again = m.predict({"X": x})
                np.testing.assert_array_equal(again["const"], c)
                np.testing.assert_array_equal(again["same"], x)
                np.testing.assert_array_equal(x, np.arange(6, dtype=np.float32).reshape(2, 3) + 10)

    def test_output_outlives_model(self):
        m = opennpu.Model(self.conv_path, dims={"N": 2})
        out = m.predict({"X": self.x(4)})
        y = out["Y"]
        del m, out
        import gc
        gc.collect()
        np.testing.assert_allclose(y, reference(self.x(4))[0], rtol=1e-4, atol=1e-5)

    def test_integer_and_bool_io(self):
        m = opennpu.Model(typed_net(self.tmp.name))
        a = np.array([1, -2, 3], dtype=np.int64)
        b = np.array([[True, False], [False, True]])
        out = m.predict({"A": a, "B": b})
        self.assertEqual(out["Y"].dtype, np.int64)
        self.assertEqual(out["Z"].dtype, np.bool_)
        np.testing.assert_array_equal(out["Y"], a + 1)
        np.testing.assert_array_equal(out["Z"], ~b)
        self.assertEqual([i["dtype"] for i in m.inputs], ["int64", "bool"])

    def test_sequence_string_bfloat16_io(self):
        g = helper.make_graph(
            [helper.make_node("SequenceConstruct", ["A", "A"], ["S"], name="seq"),
             helper.make_node("ConcatFromSequence", ["SI"], ["C"], name="concat", axis=0),
             helper.make_node("Identity", ["T"], ["TO"], name="id_t"),
             helper.make_node("Cast", ["A"], ["B16"], name="cast", to=TensorProto.BFLOAT16)],
            "io",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, [2]),
             helper.make_tensor_sequence_value_info("SI", TensorProto.FLOAT, [2]),
             helper.make_tensor_value_info("T", TensorProto.STRING, [2])],
            [helper.make_tensor_sequence_value_info("S", TensorProto.FLOAT, [2]),
             helper.make_tensor_value_info("C", TensorProto.FLOAT, [4]),
             helper.make_tensor_value_info("TO", TensorProto.STRING, [2]),
             helper.make_tensor_value_info("B16", TensorProto.BFLOAT16, [2])])
        path = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), self.tmp.name, "io.onnx")
        m = opennpu.Model(path)
        a = np.array([1.5, 2.25], np.float32)
        out = m.predict({"A": a, "SI": [a, 2 * a], "T": np.array(["h\u00e9llo", "x"])})
        self.assertIsInstance(out["S"], list)
        self.assertEqual(len(out["S"]), 2)
        for item in out["S"]:
            np.testing.assert_array_equal(item, a)
        np.testing.assert_array_equal(out["C"], np.concatenate([a, 2 * a]))
        self.assertEqual(out["TO"].tolist(), ["h\u00e9llo", "x"])
        self.assertEqual(out["B16"].dtype, np.float32)  # numpy has no bfloat16: widened exactly
        np.testing.assert_array_equal(out["B16"], a)
        with self.assertRaisesRegex(opennpu.Error, "must be a sequence"):
            m.predict({"A": a, "SI": a, "T": ["a", "b"]})
        with self.assertRaisesRegex(opennpu.Error, "not an optional input"):
            m.predict({"A": None, "SI": [a], "T": ["a", "b"]})
        with self.assertRaisesRegex(opennpu.Error, "cannot be converted"):
            m.predict({"A": "abc", "SI": [a], "T": ["a", "b"]})
        with self.assertRaisesRegex(opennpu.Error, "not a str or bytes"):
            m.predict({"A": a, "SI": [a], "T": np.array([1, 2], dtype=object)})
        with self.assertRaisesRegex(opennpu.Error, "dict of input name"):
            m.predict({1: a})

    # --- metadata ---
    def test_inputs_outputs(self):
        self.assertEqual(self.cpu.inputs, [{"name": "X", "dtype": "float32", "shape": [2, 3, 8, 8]}])
        self.assertEqual([o["name"] for o in self.cpu.outputs], ["Y", "feat"])
        self.assertEqual(self.cpu.outputs[0]["dtype"], "float32")
        unbound = opennpu.Model(self.conv_path)
        self.assertEqual(unbound.inputs[0]["shape"], ["N", 3, 8, 8])
        # a symbolic batch binds at predict time on the CPU
        out = unbound.predict({"X": np.zeros((3, 3, 8, 8), dtype=np.float32)})
        self.assertEqual(out["Y"].shape, (3, 5))
        self.assertEqual(self.cpu.compute_units, "cpu_only")
        self.assertIsNone(self.cpu.hardware)
        self.assertEqual(self.npu.hardware, "ane_m1")
        self.assertIn("ane_m1", repr(self.npu))

    def test_plan(self):
        plan = self.npu.plan()
        self.assertEqual([p["node"] for p in plan], ["conv", "relu", "sin", "pool", "flatten", "fc"])
        keys = {"node", "op", "device", "could_run_on", "reason", "est_ms", "share", "energy_share"}
        for p in plan:
            self.assertTrue(keys <= set(p), p)
            self.assertIn(p["device"], ("npu", "cpu"))
            self.assertIn(p["device"], p["could_run_on"])
            self.assertGreaterEqual(p["est_ms"], 0)
            self.assertGreaterEqual(p["share"], 0)
            self.assertLessEqual(p["share"], 1)
            self.assertGreaterEqual(p["energy_share"], 0)
            self.assertLessEqual(p["energy_share"], 1)
            if p["device"] == "npu":
                self.assertEqual(p["reason"], "")
            else:
                self.assertNotEqual(p["reason"], "")
        by_node = {p["node"]: p for p in plan}
        self.assertEqual(by_node["conv"]["op"], "Conv")
        self.assertEqual(by_node["conv"]["device"], "npu")
        self.assertGreater(by_node["conv"]["est_ms"], 0)
        self.assertGreater(by_node["conv"]["macs"], 0)
        self.assertEqual(by_node["sin"]["device"], "cpu")
        self.assertEqual(by_node["sin"]["could_run_on"], ["cpu"])
        self.assertLessEqual(sum(p["share"] for p in plan), 1 + 1e-9)
        # cpu_only: every node on the CPU, saying why
        cpu_plan = self.cpu.plan()
        self.assertEqual(len(cpu_plan), len(plan))
        self.assertTrue(all(p["device"] == "cpu" and p["reason"] for p in cpu_plan))

    def test_timing(self):
        self.assertIsNone(self.cpu.timing())
        t = self.npu.timing()
        for k in ("latency_ms", "npu_ms", "energy_mj", "mac_utilization", "dram_mb"):
            self.assertIn(k, t)
            self.assertGreaterEqual(t[k], 0)
        self.assertGreater(t["latency_ms"], 0)
        self.assertGreaterEqual(t["latency_ms"], t["npu_ms"])
        self.assertGreater(t["energy_mj"], 0)
        self.assertLessEqual(t["mac_utilization"], 1)

    # --- errors ---
    def test_errors(self):
        x = self.x()
        cases = {
            "wrong dtype": lambda: self.cpu.predict({"X": x.astype(np.float64)}),
            "wrong rank": lambda: self.cpu.predict({"X": x[0]}),
            "wrong dim": lambda: self.cpu.predict({"X": np.zeros((2, 3, 8, 9), np.float32)}),
            "bound dim": lambda: self.cpu.predict({"X": np.zeros((3, 3, 8, 8), np.float32)}),
            "missing input": lambda: self.cpu.predict({}),
            "unknown input": lambda: self.cpu.predict({"X": x, "nope": x}),
            "unsupported dtype": lambda: self.cpu.predict({"X": x.astype(np.complex64)}),
            "npu wrong dtype": lambda: self.npu.predict({"X": x.astype(np.float16)}),
            "missing file": lambda: opennpu.Model(os.path.join(self.tmp.name, "missing.onnx")),
            "unknown hardware": lambda: opennpu.Model(self.conv_path, hardware="no_such_npu", compute_units="all",
                                                      dims={"N": 1}),
            "bad compute units": lambda: opennpu.Model(self.conv_path, compute_units="gpu"),
            "negative threads": lambda: opennpu.Model(self.conv_path, threads=-1),
        }
        for what, fn in cases.items():
            with self.subTest(what):
                with self.assertRaises(opennpu.Error) as cm:
                    fn()
                self.assertTrue(str(cm.exception), what)
        with self.assertRaisesRegex(opennpu.Error, "dtype float64"):
            self.cpu.predict({"X": x.astype(np.float64)})
        with self.assertRaisesRegex(opennpu.Error, "missing input 'X'"):
            self.cpu.predict({})
        # not a file at all / garbage file
        bad = os.path.join(self.tmp.name, "garbage.onnx")
        with open(bad, "wb") as f:
            f.write(b"\x00\x01 this is not a protobuf \xff\xff")
        with self.assertRaises(opennpu.Error):
            opennpu.Model(bad)
        # a model that failed to predict still works afterwards
        np.testing.assert_allclose(self.cpu.predict({"X": x})["Y"], reference(x)[0], rtol=1e-4, atol=1e-5)

    def test_limits(self):
        # max_memory is the process-wide per-tensor limit: a weight over 64 bytes is refused at load...
        try:
            with self.assertRaisesRegex(opennpu.Error, "memory limit of 64 bytes"):
                opennpu.Model(self.conv_path, dims={"N": 2}, max_memory=64)
        finally:
            opennpu.Model(self.conv_path, dims={"N": 2}, max_memory=16 << 30)  # ... and restored
        with self.assertRaisesRegex(opennpu.Error, "max_loop_iterations must be >= 1"):
            opennpu.Model(self.conv_path, max_loop_iterations=0)

    # --- threads ---
    def run_threads(self, model):
        inputs = [self.x(10 + i) for i in range(4)]
        expected = [model.predict({"X": x}) for x in inputs]
        results = [[] for _ in inputs]
        errors = []
        barrier = threading.Barrier(len(inputs))

        def work(i):
            try:
                barrier.wait()
                for _ in range(5):
                    results[i].append(model.predict({"X": inputs[i]}))
            except Exception as e:  # reported below, in the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for i in range(len(inputs)):
            self.assertEqual(len(results[i]), 5)
            for r in results[i]:
                for name in expected[i]:
                    np.testing.assert_array_equal(r[name], expected[i][name])

    def test_threads_cpu(self):
        self.run_threads(self.cpu)

    def test_threads_npu(self):
        self.run_threads(self.npu)


if __name__ == "__main__":
    unittest.main()
