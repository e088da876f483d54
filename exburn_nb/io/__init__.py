"""Files: the model file format (safetensors + signed JSON), the checks of every value a
file holds, atomic writes, and run directories (a run's rows as JSON lines, its header
and stop file). It knows tensors and metadata, never a ``Model``."""
