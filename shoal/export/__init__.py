"""ONNX export: the padded graph form of embedding bags, graph rewrites (int8, fp16), parity."""
