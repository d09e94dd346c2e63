"""One reader per annotation format, each producing `effdet.data.records.ReadResult`."""
