"""Deploy path: export a BitConfig to ONNX (QDQ) and benchmark it with ONNX Runtime."""
