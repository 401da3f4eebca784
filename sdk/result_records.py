"""``ResultRecord`` and ``ResultRecordMetadata`` (``prefect.result_records``)."""

from millstream._engine.results.records import ResultRecord, ResultRecordMetadata

__all__ = ["ResultRecord", "ResultRecordMetadata"]
