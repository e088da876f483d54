"""Files: the model file format (safetensors + signed JSON), the checks of every value a
file holds, and atomic writes. It knows tensors and metadata, never a ``Model``."""
