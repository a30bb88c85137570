"""Every predictor (PyTorch, ONNX Runtime) behind one call, run references resolved in one place, latency."""
