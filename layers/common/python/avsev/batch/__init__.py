"""Batch scoring: files of accidents in, predictions out.

- `reading`: an input's bytes → validated chunks of rows, column by column
- `scoring`: chunks → prediction tables; a stream or a local file → outputs (`avsev score`)
- `names`: the names of what one input produces, and the S3 prefixes
- `events`: the S3 objects an event announces, whatever its shape
- `s3jobs`: one S3 object in, outputs out, across invocations when it is big
- `daily`: what arrived under `incoming/` recently, in one dated output
"""

from avsev.batch.daily import DailyResult, run_daily
from avsev.batch.names import IN_PREFIX, INCOMING_PREFIX, OUT_PREFIX, TMP_PREFIX, OutputName
from avsev.batch.reading import CHUNK_ROWS, Chunk, read_chunks
from avsev.batch.s3jobs import Job, NotAJob, ObjectGone, jobs_from_event, process
from avsev.batch.scoring import OUTPUT_COLUMNS, REJECTED_COLUMNS, Summary, score_file

__all__ = [
    "CHUNK_ROWS",
    "INCOMING_PREFIX",
    "IN_PREFIX",
    "OUTPUT_COLUMNS",
    "OUT_PREFIX",
    "REJECTED_COLUMNS",
    "TMP_PREFIX",
    "Chunk",
    "DailyResult",
    "Job",
    "NotAJob",
    "ObjectGone",
    "OutputName",
    "Summary",
    "jobs_from_event",
    "process",
    "read_chunks",
    "run_daily",
    "score_file",
]
