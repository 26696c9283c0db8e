#!/usr/bin/env python3
"""A tiny model with CLIP's ONNX interface, for testing the zero-shot path end to end.

    clip_test_model.py OUT.onnx

No CLIP weights can be had from the registries reachable here, so this writes an honest stand-in with
exactly the inputs and outputs of a Hugging Face / Optimum CLIP export:

    inputs   input_ids      int64 [text_batch, 77]
             pixel_values   float [image_batch, 3, 224, 224]
             attention_mask int64 [text_batch, 77]
    outputs  text_embeds    float [text_batch, 512]
             image_embeds   float [image_batch, 512]
             logits_per_image float [image_batch, text_batch]  (100 × cosine, as CLIP's logit scale)

Image tower: the mean of each normalised colour channel, projected to 512-d. Text tower: a token
embedding table in which only the words "red", "green" and "blue" (CLIP BPE ids 736, 1901, 1746) have a
colour direction, summed over the unmasked tokens and projected with the same matrix. A red picture
therefore lands on a prompt that says "red": it proves tokenizer → both towers → cosine → softmax without
claiming any accuracy. The projection has orthonormal rows, so cosines are those of the 3-d colours.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = 49408
CONTEXT = 77
DIM = 512
COLOUR_TOKENS = {736: 0, 1901: 1, 1746: 2}  # red, green, blue → R, G, B


def build():
    table = np.zeros((VOCAB, 3), dtype=np.float32)
    for token, channel in COLOUR_TOKENS.items():
        table[token, channel] = 1.0
    # Orthonormal 3×512 projection from a fixed seed (QR of a Gaussian matrix).
    q, _ = np.linalg.qr(np.random.RandomState(7).normal(size=(DIM, 3)))
    projection = np.ascontiguousarray(q.T.astype(np.float32))

    inits = [
        numpy_helper.from_array(table, "token_colours"),
        numpy_helper.from_array(projection, "projection"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "spatial_axes"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "token_axis"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "last_axis"),
        numpy_helper.from_array(np.array([100.0], dtype=np.float32), "logit_scale"),
    ]
    nodes = [
        # image tower
        helper.make_node("ReduceMean", ["pixel_values", "spatial_axes"], ["channel_means"], keepdims=0),
        helper.make_node("MatMul", ["channel_means", "projection"], ["image_embeds"]),
        # text tower
        helper.make_node("Gather", ["token_colours", "input_ids"], ["token_vectors"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["token_vectors", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "token_axis"], ["text_colours"], keepdims=0),
        helper.make_node("MatMul", ["text_colours", "projection"], ["text_embeds"]),
        # logits_per_image = 100 × normalised(image) · normalised(text)ᵀ
        helper.make_node("LpNormalization", ["image_embeds"], ["image_unit"], axis=-1, p=2),
        helper.make_node("LpNormalization", ["text_embeds"], ["text_unit"], axis=-1, p=2),
        helper.make_node("Transpose", ["text_unit"], ["text_unit_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["image_unit", "text_unit_t"], ["cosines"]),
        helper.make_node("Mul", ["cosines", "logit_scale"], ["logits_per_image"]),
    ]
    graph = helper.make_graph(
        nodes, "clip-test",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["text_batch", CONTEXT]),
         helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["image_batch", 3, 224, 224]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["text_batch", CONTEXT])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["text_batch", DIM]),
         helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["image_batch", DIM]),
         helper.make_tensor_value_info("logits_per_image", TensorProto.FLOAT, ["image_batch", "text_batch"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="media-analyzer scripts/models/clip_test_model.py")
    model.ir_version = 8
    helper.set_model_props(model, {"purpose": "test stand-in with CLIP's interface; not a CLIP model"})
    onnx.checker.check_model(model)
    return model


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    onnx.save(build(), argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
