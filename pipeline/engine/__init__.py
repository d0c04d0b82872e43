"""The engine: runs any declared step. Knows nothing about YOLO or CLIP."""
