"""The data side: dataset readers, validation, statistics, anchor suggestion, TFRecords, input pipeline."""
