"""Running a saved model: every predictor (PyTorch, ONNX Runtime) behind one call, the ONNX feed, latency."""
