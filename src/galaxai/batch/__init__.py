"""Survey-scale batch jobs (deblend, explain, discriminate) on a local process or Ray Data."""
from galaxai.batch.engines import ENGINES, read_results, run_batch_job
from galaxai.batch.jobs import TASKS, BatchJob

__all__ = ["ENGINES", "TASKS", "BatchJob", "read_results", "run_batch_job"]
