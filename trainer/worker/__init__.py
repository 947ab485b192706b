"""The long-running trainer worker (``slicetwin trainer``): stream -> dataset -> Algorithm 1 ->
gate -> registry. See docs/trainer_worker.md."""

from trainer.worker.settings import WorkerSettings
from trainer.worker.worker import CycleResult, TrainerWorker

__all__ = ["CycleResult", "TrainerWorker", "WorkerSettings"]
