"""What the tests share: project copies and doit runs, detecting checkpoints, the real Triton, the
TensorRT stand-in."""
