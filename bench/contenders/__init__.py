"""The contenders: one module per library, all with the same small interface.

Each runs in its own worker process (see :mod:`bench.worker`), so imports, global state
and peak memory never mix. This registry is importable without torch: the parent process
only needs the names.

Interface (see :class:`bench.contenders.base.Contender`): ``setup(workload, x, y)`` builds
the network and optimizer and places the data; ``train(n, epochs, batch_size)`` trains on
the first ``n`` samples; ``predict(n, batch_size)`` returns outputs for the first ``n``.
"""

from __future__ import annotations

# name -> (module, class, label shown in the tables)
CONTENDERS: dict[str, tuple[str, str, str]] = {
    "hand": ("hand", "HandLoop", "hand-written loop"),
    "hand_2": ("hand", "HandLoop", "hand-written loop, 2nd process (A/A control)"),
    "hand_fused": ("hand", "HandLoopFused", "best hand loop: Adam(fused=True), losses read per epoch"),
    "dataloader": ("dataloader", "DataLoaderLoop", "PyTorch + DataLoader"),
    "xb": ("exburn", "ExburnFit", "xb.fit"),
    "xb_verbose": ("exburn", "ExburnFitVerbose", "xb.fit verbose=True"),
    "xb_run_dir": ("exburn", "ExburnFitRunDir", "xb.fit run_dir=..."),
    "xb_compiled": ("exburn", "ExburnFitCompiled", "xb.fit compile=True (captured step)"),
    "keras": ("peer_keras", "KerasFit", "Keras 3 (torch)"),
    "lightning": ("peer_lightning", "LightningFit", "Lightning"),
    "skorch": ("peer_skorch", "SkorchFit", "skorch"),
}

TRAINING = ["hand", "hand_2", "hand_fused", "dataloader", "xb", "xb_verbose", "xb_run_dir",
            "xb_compiled", "keras", "lightning", "skorch"]
INFERENCE = ["hand", "hand_2", "dataloader", "xb", "keras", "lightning", "skorch"]
SCALING = ["hand", "dataloader", "xb", "keras", "lightning", "skorch"]


# how the inference table names the contenders whose predict call differs from their name
PREDICT_LABELS = {"hand": "raw inference_mode batches", "xb": "xb model.predict",
                  "keras": "Keras 3 predict", "lightning": "Lightning Trainer.predict",
                  "skorch": "skorch predict_proba", "dataloader": "PyTorch + DataLoader"}


def label(name: str, predict: bool = False) -> str:
    """The row label for a contender name (in the inference table with ``predict``)."""
    return PREDICT_LABELS.get(name, CONTENDERS[name][2]) if predict else CONTENDERS[name][2]
