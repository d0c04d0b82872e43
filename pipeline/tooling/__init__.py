"""Tools shared by builders: ONNX export, validation and precision; the EfficientNMS reference."""
