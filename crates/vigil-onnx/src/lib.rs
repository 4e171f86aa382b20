//! Vigil's ONNX engine (work in progress).
