"""What runs a measured model: ONNX Runtime sessions and node times (`ort`), the machine (`machine`)."""
