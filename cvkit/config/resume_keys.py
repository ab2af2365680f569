"""The run settings ``cvkit train --resume`` may change, with why each is safe.

A module of its own, without imports, so that the command line can list them in ``cvkit train
--help`` without importing the config machinery (YAML, the registries) for every command.
"""

# cvkit.engine.resume checks a resumed run against them. None of them changes what a step
# computes, except ``train.epochs``, which stretches the schedule over the new length.
CHANGEABLE_ON_RESUME = {
    "train.epochs": "the run's length (the LR schedule is recomputed over it)",
    "train.max_steps": "where the run stops",
    "train.log_interval": "logging cadence",
    "train.checkpoint_interval": "checkpoint cadence",
    "train.tensorboard": "logging",
    "train.device": "where it runs",
    "train.dist.backend": "how the processes talk",
    "train.dist.timeout_minutes": "how long a process waits for the others",
    "eval.interval": "evaluation cadence",
    "eval.patience": "early stopping",
    "eval.plots": "the final report",
    "data.num_workers": "loader processes (the batches are the same)",
    "data.check_images": "the image check before the first step",
    "data.prefetch_factor": "loader prefetching",
    "data.pin_memory": "loader memory",
    "data.val_batch_size": "evaluation batches",
}

__all__ = ["CHANGEABLE_ON_RESUME"]
